// LeakSanitizer's built-in suppressions for the test binaries (read only
// under --config=asan; an ordinary build never calls it): memory that
// system libraries keep for the life of the process by design. fontconfig
// loads its configuration and font cache once, when cairo first draws text.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n";
}
