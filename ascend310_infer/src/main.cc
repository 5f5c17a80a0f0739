// Inference program for an exported model (export.py): reads the .bin batches
// written by preprocess.py, runs them through the MindSpore C++ API and writes
// one result file per output, plus the mean latency.
//
//   main --mindir_path=MODEL.mindir --input_paths=DIR[,DIR...] [--device_target=Ascend310]
//        [--device_id=0] [--result_dir=./result_Files] [--time_dir=./time_Result] [--profile=false]
//
// --input_paths: one folder per network input, in the model's input order
// (preprocess.py writes <infer_data_path>/<input name>/<model>_<i>.bin); the
// files of the first folder define the batches, the others must hold files of
// the same names. Output j of batch <model>_<i>.bin goes to
// <result_dir>/<model>_<i>_<j>.bin. Device: Ascend310, Ascend310P, Ascend, GPU
// or CPU; also from the environment (INFER_DEVICE_TARGET, DEVICE_ID).
// --profile=true also times every kernel (Predict's before/after callbacks, which
// add a little to the latencies) and writes the mean per batch, after the first
// batch, by operator type and for the slowest kernels to <time_dir>/kernel_times.txt.
// Exit status: 0 on success, 1 on any error (printed to stderr), 2 on bad arguments.
#include <sys/time.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "inc/utils.h"

namespace {

struct Options {
  std::string mindir_path;
  std::vector<std::string> input_paths;
  std::string device_target = "Ascend310";
  uint32_t device_id = 0;
  std::string result_dir = "./result_Files";
  std::string time_dir = "./time_Result";
  bool profile = false;
};

const char kUsage[] =
    "usage: main --mindir_path=MODEL.mindir --input_paths=DIR[,DIR...] [--device_target=Ascend310|"
    "Ascend310P|Ascend|GPU|CPU] [--device_id=N] [--result_dir=DIR] [--time_dir=DIR] [--profile=true|false]\n";

const char kHelp[] =
    "Runs an exported model over preprocess.py's .bin batches and writes one result file per\n"
    "output and batch (<result_dir>/<model>_<i>_<j>.bin) and the mean latency (<time_dir>).\n"
    "  --input_paths  one folder per network input, in the model's input order\n"
    "  --device_target, --device_id  also from INFER_DEVICE_TARGET and DEVICE_ID\n"
    "  --profile=true  also times every kernel: <time_dir>/kernel_times.txt\n"
    "Exit status: 0 on success, 1 on an error, 2 on bad arguments.\n";

Options ParseArgs(int argc, char **argv) {
  Options opt;
  if (const char *env = std::getenv("INFER_DEVICE_TARGET")) opt.device_target = env;
  if (const char *env = std::getenv("DEVICE_ID")) opt.device_id = static_cast<uint32_t>(std::atoi(env));
  std::map<std::string, std::string> values;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      throw std::invalid_argument("unexpected argument '" + arg + "'");
    }
    values[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  for (const auto &kv : values) {
    const std::string &key = kv.first, &value = kv.second;
    if (key == "mindir_path") {
      opt.mindir_path = value;
    } else if (key == "input_paths" || key == "input0_path") {
      opt.input_paths = zoo::SplitList(value);
    } else if (key == "device_target") {
      opt.device_target = value;
    } else if (key == "device_id") {
      char *end = nullptr;
      long id = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || id < 0) throw std::invalid_argument("--device_id must be a number");
      opt.device_id = static_cast<uint32_t>(id);
    } else if (key == "result_dir") {
      opt.result_dir = value;
    } else if (key == "time_dir") {
      opt.time_dir = value;
    } else if (key == "profile") {
      if (value != "true" && value != "false") throw std::invalid_argument("--profile must be true or false");
      opt.profile = value == "true";
    } else {
      throw std::invalid_argument("unknown option --" + key);
    }
  }
  if (opt.mindir_path.empty()) throw std::invalid_argument("--mindir_path is required");
  if (opt.input_paths.empty()) throw std::invalid_argument("--input_paths is required");
  return opt;
}

std::shared_ptr<mindspore::Context> MakeContext(const Options &opt) {
  auto context = std::make_shared<mindspore::Context>();
  auto &devices = context->MutableDeviceInfo();
  const std::string &target = opt.device_target;
  if (target == "Ascend310" || target == "Ascend310P" || target == "Ascend") {
    auto info = std::make_shared<mindspore::AscendDeviceInfo>();
    info->SetDeviceID(opt.device_id);
    devices.push_back(info);
  } else if (target == "GPU") {
    auto info = std::make_shared<mindspore::GPUDeviceInfo>();
    info->SetDeviceID(opt.device_id);
    devices.push_back(info);
  } else if (target == "CPU") {
    devices.push_back(std::make_shared<mindspore::CPUDeviceInfo>());
  } else {
    throw std::invalid_argument("unknown --device_target '" + target + "' (Ascend310, Ascend310P, Ascend, GPU, CPU)");
  }
  return context;
}

std::string ShapeText(const std::vector<int64_t> &shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

double NowMs() {
  struct timeval tv {};
  gettimeofday(&tv, nullptr);
  return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

// Milliseconds spent in each kernel, summed over the batches timed (those run while `on`).
struct KernelTimes {
  std::map<std::string, double> by_type, by_kernel;
  std::map<std::string, std::string> type_of;
  double started = 0.0;
  bool on = false;
  size_t batches = 0;

  std::string Report() const {
    std::vector<std::pair<double, std::string>> types, kernels;
    for (const auto &kv : by_type) types.emplace_back(kv.second / batches, kv.first);
    for (const auto &kv : by_kernel) kernels.emplace_back(kv.second / batches, kv.first);
    std::sort(types.rbegin(), types.rend());
    std::sort(kernels.rbegin(), kernels.rend());
    std::ostringstream out;
    out << "kernel time per batch, ms (mean over " << batches << " batches)\n";
    if (types.empty()) out << "no kernel was timed: this runtime does not call Predict's callbacks\n";
    for (const auto &t : types) out << "type " << t.second << " " << t.first << "\n";
    for (size_t i = 0; i < kernels.size() && i < 20; ++i) {
      out << "kernel " << kernels[i].second << " (" << type_of.at(kernels[i].second) << ") " << kernels[i].first
          << "\n";
    }
    return out.str();
  }
};

int Run(const Options &opt) {
  mindspore::Model model;
  mindspore::Status status = model.Build(opt.mindir_path, mindspore::ModelType::kMindIR, MakeContext(opt));
  if (status != mindspore::kSuccess) {
    std::cerr << "error: cannot build the model from " << opt.mindir_path << " on " << opt.device_target
              << ": " << status.ToString() << std::endl;
    return 1;
  }
  std::vector<mindspore::MSTensor> inputs = model.GetInputs();
  if (inputs.size() != opt.input_paths.size()) {
    std::cerr << "error: the model has " << inputs.size() << " inputs but " << opt.input_paths.size()
              << " input folders were given" << std::endl;
    return 1;
  }
  std::vector<std::string> batches = zoo::ListBinFiles(opt.input_paths[0]);
  if (batches.empty()) {
    std::cerr << "error: no .bin files in " << opt.input_paths[0] << std::endl;
    return 1;
  }
  zoo::MakeDirs(opt.result_dir);
  zoo::MakeDirs(opt.time_dir);
  double total_ms = 0.0;
  std::vector<double> batch_ms;
  batch_ms.reserve(batches.size());
  KernelTimes kernels;
  mindspore::MSKernelCallBack before = [&kernels](const std::vector<mindspore::MSTensor> &,
                                                  const std::vector<mindspore::MSTensor> &,
                                                  const mindspore::MSCallBackParam &) {
    kernels.started = NowMs();
    return true;
  };
  mindspore::MSKernelCallBack after = [&kernels](const std::vector<mindspore::MSTensor> &,
                                                 const std::vector<mindspore::MSTensor> &,
                                                 const mindspore::MSCallBackParam &info) {
    if (!kernels.on) return true;
    double ms = NowMs() - kernels.started;
    kernels.by_type[info.node_type] += ms;
    kernels.by_kernel[info.node_name] += ms;
    kernels.type_of[info.node_name] = info.node_type;
    return true;
  };
  for (const auto &first : batches) {
    std::string stem = zoo::Stem(first);
    for (size_t k = 0; k < inputs.size(); ++k) {
      std::string path = k == 0 ? first : opt.input_paths[k] + "/" + stem + ".bin";
      std::vector<char> data = zoo::ReadFile(path);
      if (data.size() != inputs[k].DataSize()) {
        std::cerr << "error: " << path << " holds " << data.size() << " bytes, but input " << k << " ("
                  << inputs[k].Name() << ", shape " << ShapeText(inputs[k].Shape()) << ") takes "
                  << inputs[k].DataSize() << " bytes: export and preprocess with the same batch size"
                  << std::endl;
        return 1;
      }
      std::memcpy(inputs[k].MutableData(), data.data(), data.size());
    }
    std::vector<mindspore::MSTensor> outputs;
    // the first batch's one-off set-up is left out of the kernel times (unless it is the only one)
    kernels.on = opt.profile && (!batch_ms.empty() || batches.size() == 1);
    kernels.batches += kernels.on ? 1 : 0;
    double start = NowMs();
    status = opt.profile ? model.Predict(inputs, &outputs, before, after) : model.Predict(inputs, &outputs);
    batch_ms.push_back(NowMs() - start);
    total_ms += batch_ms.back();
    if (status != mindspore::kSuccess) {
      std::cerr << "error: inference failed on " << first << ": " << status.ToString() << std::endl;
      return 1;
    }
    for (size_t j = 0; j < outputs.size(); ++j) {
      std::string out = opt.result_dir + "/" + stem + "_" + std::to_string(j) + ".bin";
      zoo::WriteFile(out, outputs[j].MutableData(), outputs[j].DataSize());
    }
  }
  double mean = total_ms / static_cast<double>(batches.size());
  std::ostringstream line;
  line << "NN inference cost average time: " << mean << " ms of infer_count " << batches.size() << "\n";
  // the median leaves out the first call's one-off set-up (benchmarks use it)
  std::sort(batch_ms.begin(), batch_ms.end());
  line << "NN inference median time: " << batch_ms[batch_ms.size() / 2] << " ms\n";
  std::string text = line.str();
  zoo::WriteFile(opt.time_dir + "/test_perform_static.txt", text.data(), text.size());
  std::cout << text;
  if (opt.profile) {
    std::string report = kernels.Report();
    zoo::WriteFile(opt.time_dir + "/kernel_times.txt", report.data(), report.size());
    std::cout << report;
  }
  std::cout << "results in " << opt.result_dir << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::cout << kUsage << kHelp;
      return 0;
    }
  }
  Options opt;
  try {
    opt = ParseArgs(argc, argv);
  } catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    return Run(opt);
  } catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
}
