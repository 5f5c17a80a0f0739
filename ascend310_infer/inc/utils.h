// File helpers of the inference program: list the batch files, read them,
// write the outputs.
#ifndef ZOO_INFER_UTILS_H_
#define ZOO_INFER_UTILS_H_

#include <cstddef>
#include <string>
#include <vector>

namespace zoo {

// Regular files in `dir` whose names end in ".bin", sorted naturally
// (model_2.bin before model_10.bin). Throws std::runtime_error on a missing folder.
std::vector<std::string> ListBinFiles(const std::string &dir);

// The whole file as bytes. Throws std::runtime_error when it cannot be read.
std::vector<char> ReadFile(const std::string &path);

// Write `size` bytes to `path` (a temporary name, then a rename).
void WriteFile(const std::string &path, const void *data, size_t size);

// "dir/name.bin" -> "name".
std::string Stem(const std::string &path);

// Create `dir` (and its parents) if missing.
void MakeDirs(const std::string &dir);

// Split "a,b,c" at commas.
std::vector<std::string> SplitList(const std::string &text);

}  // namespace zoo

#endif  // ZOO_INFER_UTILS_H_
