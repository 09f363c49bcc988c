// Exchange of a module's parameters and buffers with PyTorch, as
// safetensors files (io/safetensors.h), in the layout of plain PyTorch
// modules.
//
// Names: a tensor's dotted name is the same on both sides, parameters and
// buffers alike, as in torch.nn.Module.state_dict() ("flow.0.net.layer0.
// weight", "flow.1.made.order"); a PyTorch model whose submodules and
// tensors carry these names loads with load_state_dict(strict=True).
// Layout: flowtape's linear layers compute y = x W + b with W [in, out];
// torch.nn.Linear computes y = x W^T + b with weight [out, in]. So the
// "weight" of every nn::Linear, nn::MaskedLinear and flows::SpectralLinear
// (and the MaskedLinear's "mask" buffer, [in, out] like its weight) is
// transposed on export and on import: file shape [out, in]. Everything else
// is stored as it is: nn::Conv2d's weight [Cout, Cin, KH, KW] and biases
// [Cout] are torch.nn.Conv2d's; 1x1 invertible convolutions (W [C, C],
// z = W x per pixel, the layout of a [C, C, 1, 1] conv weight), vectors,
// scalars (shape []) and other matrices keep flowtape's shapes.
// SpectralLinear's power-iteration vectors u [in], v [out] keep their
// names (they are not torch.nn.utils.spectral_norm's weight_u / weight_v).
// Values keep their dtype on export (F32 or F64).
//
// Import reads the file (every check of safetensors.h), maps it back, and
// restores the module as LoadCheckpoint does (nn/checkpoint.h): every
// parameter and buffer present with its shape (in the file's layout: a
// transposed tensor's expected [out, in] is named in the message), no
// unknown name, every value finite and in its domain, values converted to
// the module's dtype (F32 into a float64 model exactly, F64 into float32
// rounded); on any error the module is unchanged.
#ifndef FLOWTAPE_IO_TORCH_EXCHANGE_H_
#define FLOWTAPE_IO_TORCH_EXCHANGE_H_

#include <set>
#include <string>

#include "absl/status/status.h"
#include "io/safetensors.h"
#include "nn/module.h"

namespace flowtape::io {

absl::Status ExportSafetensors(const std::string& path,
                               const nn::Module& module,
                               const Metadata& metadata = {});
absl::Status ImportSafetensors(const std::string& path, nn::Module& module,
                               Metadata* metadata = nullptr);

// The names (parameters and buffers) that are transposed between the two
// layouts.
std::set<std::string> TransposedNames(const nn::Module& module);

}  // namespace flowtape::io

#endif  // FLOWTAPE_IO_TORCH_EXCHANGE_H_
