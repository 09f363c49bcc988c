// Loads the four earth catalogues from flowtape's runfiles (as a consumer's
// binary sees them) and prints their sizes; exits 1 if any fails to load.
#include <cstdio>
#include <string>

#include "data/earth.h"

int main() {
  const std::string dir = flowtape::data::DefaultEarthDataDir();
  int failures = 0;
  for (const char* name : {"volcano", "earthquake", "flood", "fire"}) {
    auto x = flowtape::data::LoadEarthCsv(dir + "/" + name + ".csv");
    if (!x.ok()) {
      std::printf("%s: %s\n", name, x.status().ToString().c_str());
      ++failures;
      continue;
    }
    std::printf("%s: %lld points from %s\n", name,
                static_cast<long long>(x->dim(0)), dir.c_str());
  }
  return failures == 0 ? 0 : 1;
}
