// Writes a small random IDF model file and an IDX file of random images
// for the command-line test: make_idf_files MODEL IDX.
#include <fstream>
#include <iostream>

#include "autodiff/rng.h"
#include "compression/idf.h"
#include "compression/idf_codec.h"

int main(int argc, char** argv) {
  using namespace flowtape::compression;
  if (argc != 3) return 2;
  IdfOptions o;
  o.height = 8;
  o.width = 6;
  o.levels = {{true, 2}, {false, 1}, {false, 0}};
  o.hidden = {8};
  o.components = 2;
  flowtape::Rng rng(1);
  auto flow = IntegerDiscreteFlow::Create(o, rng);
  for (auto& [name, p] : (*flow)->NamedParameters()) {
    double* v = p.mutable_data<double>();
    const double scale = name.find(".prior.") != std::string::npos ? 0.05 : 0.5;
    for (int64_t i = 0; i < p.numel(); ++i) v[i] += scale * rng.Normal();
  }
  if (!SaveIdf(argv[1], **flow).ok()) return 1;
  IdfImages images;
  images.count = 9;
  images.height = 8;
  images.width = 6;
  for (int i = 0; i < 9 * 48; ++i) {
    images.pixels.push_back(i % 4 == 0 ? 0 : rng.UniformInt(256));
  }
  std::ofstream(argv[2], std::ios::binary) << IdxImageBytes(images);
  return 0;
}
