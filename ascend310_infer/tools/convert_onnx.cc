// ONNX -> MindIR that MindSpore Lite loads, with the converter library of the
// MindSpore Lite package (libmindspore_converter.so). Its header is not
// shipped, so the two members used are declared here.
//
//   convert_onnx MODEL.onnx OUTPUT_PREFIX      (writes OUTPUT_PREFIX.mindir)
#include <iostream>
#include <string>
#include <vector>

#include "include/api/status.h"

namespace mindspore {
namespace converter {
enum FmkType : int { kFmkTypeTf = 0, kFmkTypeCaffe = 1, kFmkTypeOnnx = 2, kFmkTypeMs = 3, kFmkTypeTflite = 4 };
}  // namespace converter

class Converter {
 public:
  Converter();
  Status Convert(converter::FmkType fmk, const std::vector<char> &model_file,
                 const std::vector<char> &output_file, const std::vector<char> &weight_file);

 private:
  char storage_[256];  // room for the library's members (a shared_ptr to its settings)
};
}  // namespace mindspore

namespace {
std::vector<char> Chars(const std::string &s) { return std::vector<char>(s.begin(), s.end()); }
}  // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    std::cerr << "usage: convert_onnx MODEL.onnx OUTPUT_PREFIX\n";
    return 2;
  }
  mindspore::Converter converter;
  mindspore::Status status = converter.Convert(mindspore::converter::kFmkTypeOnnx, Chars(argv[1]),
                                               Chars(argv[2]), Chars(""));
  if (status != mindspore::kSuccess) {
    std::cerr << "error: converting " << argv[1] << " failed: " << status.ToString() << std::endl;
    return 1;
  }
  std::cout << "wrote " << argv[2] << ".mindir" << std::endl;
  return 0;
}
