// Module buffers: dotted names with the parameters' traversal, never trained
// (no requires_grad, not in Parameters(), untouched by optimizers), updated
// in place through the registered handle.
#include "nn/module.h"

#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/optim.h"

namespace flowtape::nn {
namespace {

// y = x * w with a running count of calls and a running sum of inputs.
class Counter : public Module {
 public:
  explicit Counter(int64_t n) {
    w_ = RegisterParameter("w", Tensor::Ones({n}));
    count_ = RegisterBuffer("count", Tensor::Scalar(0.0));
    sum_ = RegisterBuffer("sum", Tensor::Zeros({n}));
  }
  Tensor operator()(const Tensor& x) const {
    Tensor count = count_, sum = sum_;  // shared storage
    count.mutable_data<double>()[0] += 1;
    for (int64_t i = 0; i < x.numel(); ++i)
      sum.mutable_data<double>()[i] += x[i];
    return x * w_;
  }

 private:
  Tensor w_, count_, sum_;
};

class Outer : public Module {
 public:
  Outer() {
    scale_ = RegisterParameter("scale", Tensor::Scalar(2.0));
    inner_ = RegisterModule("inner", std::make_shared<Counter>(3));
    steps_ = RegisterBuffer("steps", Tensor::Scalar(0.0));
  }
  Tensor operator()(const Tensor& x) const { return (*inner_)(x)*scale_; }

 private:
  Tensor scale_, steps_;
  std::shared_ptr<Counter> inner_;
};

std::vector<std::string> Names(const NamedTensors& ts) {
  std::vector<std::string> out;
  for (const auto& [name, t] : ts) out.push_back(name);
  return out;
}

TEST(Module, NamedModulesGiveTheTensorsPrefixes) {
  Outer m;
  std::vector<std::string> prefixes;
  for (const auto& [prefix, module] : m.NamedModules()) {
    prefixes.push_back(prefix);
    EXPECT_EQ(dynamic_cast<const Counter*>(module) != nullptr,
              prefix == "inner.");
  }
  EXPECT_EQ(prefixes, (std::vector<std::string>{"", "inner."}));
}

TEST(ModuleBuffers, NamedLikeParametersAndNeverTrained) {
  Outer m;
  EXPECT_EQ(Names(m.NamedParameters()),
            (std::vector<std::string>{"scale", "inner.w"}));
  EXPECT_EQ(Names(m.NamedBuffers()),
            (std::vector<std::string>{"steps", "inner.count", "inner.sum"}));
  EXPECT_EQ(m.Parameters().size(), 2u);
  EXPECT_EQ(m.NumParameters(), 4);
  for (const auto& [name, b] : m.NamedBuffers()) {
    EXPECT_FALSE(b.requires_grad()) << name;
    EXPECT_TRUE(b.is_constant()) << name;
  }
  AdamOptions o;
  o.lr = 0.1;
  auto opt = Adam::Create(m, o).value();
  for (const auto& [name, s] : opt->NamedState())  // "<param>.<slot>"
    for (const auto& [buf, b] : m.NamedBuffers())
      EXPECT_NE(name.rfind(buf + ".", 0), 0u) << name;
  Tensor x = Tensor::FromVector({3}, {1.0, -2.0, 0.5});
  for (int step = 0; step < 3; ++step) {
    opt->ZeroGrad();
    Backward(Sum(Square(m(x))));
    Tape::Get().Reset();
    opt->Step();
  }
  // The buffers changed only through the module's in-place updates; the
  // parameters moved.
  const NamedTensors bufs = m.NamedBuffers();
  EXPECT_EQ(bufs[0].second.item(), 0.0);
  EXPECT_EQ(bufs[1].second.item(), 3.0);
  EXPECT_EQ(bufs[2].second.ToVector(), (std::vector<double>{3, -6, 1.5}));
  EXPECT_NE(m.NamedParameters()[0].second.item(), 2.0);
}

class TwiceParameter : public Module {
 public:
  TwiceParameter() {
    RegisterParameter("a", Tensor::Zeros({2}));
    RegisterParameter("a", Tensor::Zeros({3}));
  }
};

class BadBuffer : public Module {
 public:
  explicit BadBuffer(bool twice) {
    if (twice) {
      RegisterParameter("a", Tensor::Zeros({2}));
      RegisterBuffer("a", Tensor::Zeros({2}));
    } else {
      RegisterBuffer("g", Tensor::Zeros({2}).set_requires_grad(true));
    }
  }
};

TEST(ModuleBuffersDeathTest, RejectsTrainableOrDuplicateBuffers) {
  EXPECT_DEATH(BadBuffer(false), "buffer 'g' must be a defined constant");
  EXPECT_DEATH(BadBuffer(true), "name 'a' registered twice");
  EXPECT_DEATH(TwiceParameter(), "name 'a' registered twice");
}

}  // namespace
}  // namespace flowtape::nn
