"""flowtape_fuzzer: a libFuzzer target plus its gcc-friendly replay test."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_test")

def flowtape_fuzzer(name, srcs, deps, corpus, mutations = 2000):
    """Defines three targets for one LLVMFuzzerTestOneInput.

    name: the libFuzzer binary under --config=fuzz (clang, -fsanitize=fuzzer,
      address, undefined); in other configurations the same binary is
      linked with the replay driver, so `bazel build //...` works with gcc.
    name + "_replay": cc_test, any compiler: the seed corpus plus
      `mutations` deterministic mutations through the target.
    corpus: the seed directory, e.g. "corpus/csv" (checked in, small files).
    """
    common_deps = deps + [":fuzz_util"]
    cc_binary(
        name = name,
        srcs = srcs,
        deps = common_deps + select({
            ":fuzzing": [],
            "//conditions:default": [":replay_main"],
        }),
        linkopts = select({
            ":fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
    )
    cc_test(
        name = name + "_replay",
        size = "small",
        srcs = srcs,
        deps = common_deps + [":replay_main"],
        data = native.glob([corpus + "/**"]),
        args = [native.package_name() + "/" + corpus, str(mutations)],
    )
