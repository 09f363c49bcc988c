"""flowtape's external repositories, for flowtape's own WORKSPACE and for any
workspace that uses flowtape as an external repository.

In a consumer's WORKSPACE (the repository must be named "flowtape": the
earth catalogues are looked up under <runfiles>/flowtape/data/earth):

    local_repository(name = "flowtape", path = "/path/to/flowtape")
    load("@flowtape//:flowtape_deps.bzl", "flowtape_dependencies")
    flowtape_dependencies()

flowtape_dependencies() declares, unless the workspace already declared a
repository of that name:
  rules_cc               a local shim whose cc/defs.bzl forwards to Bazel 4's
                         native cc_* rules (Debian's rules_cc is too new for
                         Bazel 4, the real one is a download)
  remote_coverage_tools  empty targets, so Bazel never downloads them
  eigen                  Debian's libeigen3-dev headers, /usr/include/eigen3
  openmpi                Debian's libopenmpi-dev, /usr/lib/x86_64-linux-gnu/openmpi
                         (fetched only by targets that use MPI: parallel/mpi)

platforms and rules_java are not declared here: where they live depends on
how Bazel was installed, so a consumer's .bazelrc points them at Debian's
copies with --override_repository, as flowtape's own .bazelrc does (README.md,
"Use flowtape from your own workspace"). Abseil, Boost, libpng and zlib come
from /usr/include and /usr/lib (flowtape's third_party/BUILD carries the link
flags); ./bazelw lists their Debian packages.
"""

def _local_directory_impl(ctx):
    # The shim directories are ordinary packages of flowtape; Label() resolves
    # them in whichever repository loaded this file (main or @flowtape), so
    # no absolute path is needed.
    src = ctx.path(ctx.attr.build_file).dirname
    for child in src.readdir():
        ctx.symlink(child, child.basename)
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)

_local_directory = repository_rule(
    implementation = _local_directory_impl,
    attrs = {
        # The BUILD file at the top of the directory to mirror.
        "build_file": attr.label(allow_single_file = True, mandatory = True),
    },
    local = True,
    doc = "A local_repository whose directory is named by a label, so it " +
          "works from inside an external repository.",
)

def _eigen_repository_impl(ctx):
    root = ctx.path(ctx.attr.path)
    if not root.get_child("Eigen").exists:
        fail("@eigen: no Eigen/ in %s (Debian: apt-get install libeigen3-dev)" % root)
    ctx.symlink(root.get_child("Eigen"), "include/Eigen")
    ctx.symlink(root.get_child("unsupported"), "include/unsupported")
    ctx.symlink(ctx.attr.build_file, "BUILD")
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)

    # A wrapper for every public header: the files of Eigen/ and
    # unsupported/Eigen/ (and its CXX11/), not those under src/.
    found = ctx.execute(
        ["find", "Eigen", "unsupported/Eigen", "-name", "src", "-prune", "-o", "-type", "f", "-print"],
        working_directory = str(root),
    )
    if found.return_code != 0:
        fail("@eigen: listing %s failed: %s" % (root, found.stderr))
    for name in found.stdout.splitlines():
        ctx.template("wrap/" + name, ctx.attr.wrapper, {"@EIGEN_HEADER@": name})

_eigen_repository = repository_rule(
    implementation = _eigen_repository_impl,
    attrs = {
        "path": attr.string(mandatory = True),
        "build_file": attr.label(allow_single_file = True, mandatory = True),
        "wrapper": attr.label(allow_single_file = True, mandatory = True),
    },
    local = True,
    doc = "Eigen from a local directory (Debian: /usr/include/eigen3), " +
          "with a wrapper per public header (third_party/eigen.BUILD).",
)

def _openmpi_repository_impl(ctx):
    root = ctx.path(ctx.attr.path)
    if not root.get_child("include").get_child("mpi.h").exists:
        fail("@openmpi: no include/mpi.h in %s (Debian: apt-get install libopenmpi-dev)" % root)
    ctx.symlink(root.get_child("include"), "include")
    ctx.template("BUILD", ctx.attr.build_file, {"@OPENMPI_LIB@": str(root.get_child("lib"))})
    ctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % ctx.name)

_openmpi_repository = repository_rule(
    implementation = _openmpi_repository_impl,
    attrs = {
        "path": attr.string(mandatory = True),
        "build_file": attr.label(allow_single_file = True, mandatory = True),
    },
    local = True,
    doc = "Open MPI's headers and library from a local installation " +
          "(Debian: /usr/lib/x86_64-linux-gnu/openmpi; `mpicc --showme`).",
)

def _maybe(rule, name, **kwargs):
    if not native.existing_rule(name):
        rule(name = name, **kwargs)

def flowtape_dependencies(
        eigen_path = "/usr/include/eigen3",
        openmpi_path = "/usr/lib/x86_64-linux-gnu/openmpi"):
    """Declares the repositories flowtape's BUILD files load or depend on.

    Args:
      eigen_path: directory holding Eigen/ (Debian: /usr/include/eigen3).
      openmpi_path: directory holding Open MPI's include/mpi.h and lib/
        (Debian: /usr/lib/x86_64-linux-gnu/openmpi).
    """
    _maybe(
        _local_directory,
        name = "rules_cc",
        build_file = Label("//third_party/bazel/rules_cc:BUILD"),
    )
    _maybe(
        _local_directory,
        name = "remote_coverage_tools",
        build_file = Label("//third_party/bazel/remote_coverage_tools:BUILD"),
    )
    _maybe(
        _eigen_repository,
        name = "eigen",
        path = eigen_path,
        build_file = Label("//third_party:eigen.BUILD"),
        wrapper = Label("//third_party:eigen_wrapper.h.in"),
    )
    _maybe(
        _openmpi_repository,
        name = "openmpi",
        path = openmpi_path,
        build_file = Label("//third_party:openmpi.BUILD"),
    )
