// Replays a fuzz target without libFuzzer (any compiler, e.g. CI's gcc):
//   <target>_replay CORPUS_DIR [MUTATIONS [SEED]]
// runs LLVMFuzzerTestOneInput on every file in CORPUS_DIR, then on
// MUTATIONS (default 2000) inputs made deterministically from them (SEED,
// default 1): bit flips, byte overwrites with boundary values, insertions,
// deletions, duplicated and swapped chunks, splices of two seeds and
// numeric tokens ("1e999", "nan", "0x1p4", "-0", 2^31, ...). A crash,
// sanitizer report or FUZZ_EXPECT failure aborts the process (the test
// fails); otherwise it prints "replayed N seeds and M mutations" and exits 0.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const std::string kTokens[] = {"1e999",
                               "-1e999",
                               "1e-999",
                               "1e-310",
                               "nan",
                               "inf",
                               "-inf",
                               "0x1p4",
                               "-0",
                               "+",
                               "-",
                               ".",
                               "e",
                               ",",
                               "\n",
                               "\r\n",
                               "\t",
                               " ",
                               "#",
                               "lat,lon",
                               "90",
                               "-180",
                               "360",
                               "16",
                               "9",
                               "00",
                               "1.",
                               ".5",
                               "1e",
                               "2147483648",
                               "4294967295",
                               "9223372036854775808",
                               "99999999999999999999",
                               "\x1f\x8b",
                               "\x89PNG\r\n\x1a\n",
                               "IHDR",
                               "IDAT",
                               "IEND",
                               std::string("\x00\x00\x08\x03", 4),
                               std::string("\x00\x00\x08\x01", 4),
                               "\xff\xff\xff\xff",
                               "\x7f\xff\xff\xff",
                               "{",
                               "}",
                               "[",
                               "]",
                               "\"",
                               "\"F64\"",
                               "\"F32\"",
                               "\"data_offsets\"",
                               "\"__metadata__\"",
                               "FTCKPT",
                               std::string(4, '\0')};

std::string Mutate(const std::vector<std::string>& seeds, std::mt19937_64& g) {
  auto pick = [&](size_t n) {
    return n == 0 ? size_t{0}
                  : std::uniform_int_distribution<size_t>(0, n - 1)(g);
  };
  std::string s = seeds[pick(seeds.size())];
  const int rounds = 1 + static_cast<int>(pick(4));
  for (int r = 0; r < rounds; ++r) {
    switch (pick(8)) {
      case 0:  // bit flip
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1: {  // boundary byte
        const char vals[] = {
            0,   1,   0x7f, static_cast<char>(0x80), static_cast<char>(0xff),
            '0', '9', ','};
        if (!s.empty()) s[pick(s.size())] = vals[pick(sizeof(vals))];
        break;
      }
      case 2:  // insert a token
        s.insert(pick(s.size() + 1),
                 kTokens[pick(sizeof(kTokens) / sizeof(kTokens[0]))]);
        break;
      case 3:  // delete a range
        if (!s.empty()) {
          const size_t at = pick(s.size());
          s.erase(at, 1 + pick(std::min<size_t>(16, s.size() - at)));
        }
        break;
      case 4:  // duplicate a chunk
        if (!s.empty()) {
          const size_t at = pick(s.size());
          const size_t len = 1 + pick(std::min<size_t>(64, s.size() - at));
          s.insert(pick(s.size() + 1), s.substr(at, len));
        }
        break;
      case 5: {  // splice with another seed
        const std::string& o = seeds[pick(seeds.size())];
        s = s.substr(0, pick(s.size() + 1)) + o.substr(pick(o.size() + 1));
        break;
      }
      case 6:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      default:  // random byte
        s.insert(pick(s.size() + 1), 1, static_cast<char>(pick(256)));
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS [SEED]]\n", argv[0]);
    return 2;
  }
  const long mutations = argc > 2 ? std::atol(argv[2]) : 2000;
  const unsigned long seed = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(argv[1]))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());  // deterministic order
  std::vector<std::string> seeds;
  for (const auto& p : files) {
    std::ifstream in(p, std::ios::binary);
    seeds.emplace_back(std::istreambuf_iterator<char>(in),
                       std::istreambuf_iterator<char>());
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "no seed files in %s\n", argv[1]);
    return 2;
  }
  for (const std::string& s : seeds)
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()),
                           s.size());
  std::mt19937_64 g(seed);
  for (long i = 0; i < mutations; ++i) {
    const std::string s = Mutate(seeds, g);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()),
                           s.size());
  }
  std::printf("replayed %zu seeds and %ld mutations from %s\n", seeds.size(),
              mutations, argv[1]);
  return 0;
}
