// Atomic file replacement, for checkpoints and exported weights.
//
// WriteFileAtomically(path, bytes) writes `bytes` to a temporary
// "<path>.tmp.<pid>.XXXXXX" in the same directory (flock'ed while it is
// written), makes it mode 0644, fsyncs it, renames it over `path` and
// fsyncs the directory: readers see the old file or the new one, never a
// part, whatever happens (a crash or SIGKILL mid-write included).
//
// A writer killed mid-write leaves its temporary behind. After each
// successful write the stale temporaries of the same path are removed:
// names "<base>.tmp.<pid>.XXXXXX" (base = the file name of `path`, pid
// decimal, six characters after it) whose pid is not a live process on
// this machine (kill(pid, 0) fails with ESRCH) and whose flock nobody
// holds. A temporary of a live process (a concurrent writer; or, rarely, a
// dead writer's pid reused by a live process, until that one exits), of
// this process, or of another path is never touched. Clean-up is best
// effort: it never fails the write.
//
// Errors: Internal "'<path>': <step>: <strerror>" (nothing is left under
// the temporary name).
#ifndef FLOWTAPE_DATA_ATOMIC_FILE_H_
#define FLOWTAPE_DATA_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flowtape::data {

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_ATOMIC_FILE_H_
