// Entropy coding (compression/): run with
//   ./bazelw run --config=opt //benchmarks:rans_bench
//
// Encode/Decode: 1e6 byte symbols (K = 256) under one static table at p = 16
//   from a discretised logistic (mean 128, scale 8: ~5.2 bits/symbol);
//   bytes_per_second counts input symbols as bytes. Encode = Put for every
//   symbol + Finish; Decode = Peek, binary-search lookup, Advance per symbol.
// DecodePerSymbolTables: the same with 3072 different tables cycled (one per
//   pixel of a 3x32x32 image), as an integer-discrete-flow decoder does.
// LogisticTable / MixtureTable: building one K = 256, p = 16 table from a
//   logistic (5-component mixture) with DiscretizedLogistic*Frequencies and
//   FrequencyTable::Create: the per-pixel cost when tables are not reused.
#include <cstdint>
#include <vector>

#include "autodiff/tensor.h"
#include "benchmark/benchmark.h"
#include "compression/frequencies.h"
#include "compression/rans.h"
#include "compression/symbol_coding.h"

namespace flowtape::compression {
namespace {

constexpr int kSymbols = 1000000;

FrequencyTable LogisticTable(double mean, double scale) {
  return FrequencyTable::Create(
             DiscretizedLogisticFrequencies(mean, scale, 256, 16).value(), 16)
      .value();
}

std::vector<int> DrawSymbols(const std::vector<FrequencyTable>& tables, int n) {
  Rng rng(1);
  std::vector<int> out(n);
  for (int k = 0; k < n; ++k) {
    const FrequencyTable& t = tables[k % tables.size()];
    out[k] = t.SymbolForCumulative(
        static_cast<uint32_t>(rng.UniformInt(int64_t{1} << 16)));
  }
  return out;
}

std::vector<uint8_t> EncodeAll(const std::vector<FrequencyTable>& tables,
                               const std::vector<int>& symbols) {
  RansEncoder enc;
  for (size_t k = 0; k < symbols.size(); ++k) {
    (void)EncodeSymbol(enc, tables[k % tables.size()], symbols[k]);
  }
  return enc.Finish();
}

void BM_Encode(benchmark::State& state) {
  const std::vector<FrequencyTable> tables = {LogisticTable(128.0, 8.0)};
  const std::vector<int> symbols = DrawSymbols(tables, kSymbols);
  size_t bytes = 0;
  for (auto _ : state) {
    std::vector<uint8_t> out = EncodeAll(tables, symbols);
    bytes = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * kSymbols);
  state.counters["bits_per_symbol"] = 8.0 * bytes / kSymbols;
}
BENCHMARK(BM_Encode)->Unit(benchmark::kMillisecond);

void DecodeBench(benchmark::State& state,
                 const std::vector<FrequencyTable>& tables) {
  const std::vector<int> symbols = DrawSymbols(tables, kSymbols);
  const std::vector<uint8_t> stream = EncodeAll(tables, symbols);
  for (auto _ : state) {
    RansDecoder dec = RansDecoder::Create(stream).value();
    int64_t checksum = 0;
    for (int k = 0; k < kSymbols; ++k) {
      checksum += DecodeSymbol(dec, tables[k % tables.size()]).value();
    }
    if (!dec.Finish().ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(checksum);
  }
  state.SetBytesProcessed(state.iterations() * kSymbols);
}

void BM_Decode(benchmark::State& state) {
  DecodeBench(state, {LogisticTable(128.0, 8.0)});
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_DecodePerSymbolTables(benchmark::State& state) {
  Rng rng(2);
  std::vector<FrequencyTable> tables;
  for (int k = 0; k < 3072; ++k) {
    tables.push_back(
        LogisticTable(255.0 * rng.Uniform(), 0.5 + 10.0 * rng.Uniform()));
  }
  DecodeBench(state, tables);
}
BENCHMARK(BM_DecodePerSymbolTables)->Unit(benchmark::kMillisecond);

void BM_LogisticTable(benchmark::State& state) {
  double mean = 10.0;
  for (auto _ : state) {
    mean = mean > 240.0 ? 10.0 : mean + 0.37;
    benchmark::DoNotOptimize(LogisticTable(mean, 3.0));
  }
}
BENCHMARK(BM_LogisticTable)->Unit(benchmark::kMicrosecond);

void BM_MixtureTable(benchmark::State& state) {
  std::vector<LogisticComponent> mix = {{0.1, 20.0, 3.0},
                                        {0.3, 80.0, 5.0},
                                        {0.2, 128.0, 2.0},
                                        {0.25, 190.0, 8.0},
                                        {0.15, 240.0, 1.0}};
  for (auto _ : state) {
    mix[2].mean = mix[2].mean > 200.0 ? 60.0 : mix[2].mean + 0.37;
    benchmark::DoNotOptimize(
        FrequencyTable::Create(
            DiscretizedLogisticMixtureFrequencies(mix, 256, 16).value(), 16)
            .value());
  }
}
BENCHMARK(BM_MixtureTable)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flowtape::compression
