"""library_sources: the source files (srcs, hdrs) of cc targets of this
repository and of their dependencies, as one target's files and runfiles.

A test that builds those sources another way (the consumer tests run CMake
or a second Bazel on the checkout) lists it in `data`, so Bazel reruns the test when one of
them changes; a cc_library in `data` brings none of its sources.
"""

_Sources = provider(fields = ["files"])

def _sources_aspect_impl(target, ctx):
    direct = []
    if ctx.label.workspace_name == "":  # this repository, not @eigen etc.
        for attr in ["srcs", "hdrs", "textual_hdrs"]:
            direct += getattr(ctx.rule.files, attr, [])
    transitive = [
        dep[_Sources].files
        for dep in getattr(ctx.rule.attr, "deps", [])
        if _Sources in dep
    ]
    return [_Sources(files = depset(direct, transitive = transitive))]

_sources_aspect = aspect(
    implementation = _sources_aspect_impl,
    attr_aspects = ["deps"],
)

def _library_sources_impl(ctx):
    files = depset(transitive = [dep[_Sources].files for dep in ctx.attr.deps])
    return [DefaultInfo(
        files = files,
        runfiles = ctx.runfiles(transitive_files = files),
    )]

library_sources = rule(
    implementation = _library_sources_impl,
    attrs = {"deps": attr.label_list(aspects = [_sources_aspect])},
)
