// Module buffers: dotted names with the parameters' traversal, never trained
// (no requires_grad, not in Parameters(), untouched by optimizers), updated
// in place through the registered handle. Module::To converts every
// parameter and buffer in place (rounded to nearest; every handle sees it)
// and the module then computes in the new dtype.
#include "nn/module.h"

#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "tests/float32_tolerance.h"

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

// (x + shift) W + b, times scale: a parameter and a buffer of its own and a
// Linear child.
class Shifted : public Module {
 public:
  explicit Shifted(Rng& rng) {
    scale_ = RegisterParameter("scale", Tensor::Scalar(1.0 + rng.Uniform()));
    shift_ = RegisterBuffer("shift", Tensor::Randn({3}, rng));
    linear_ = RegisterModule("linear", Linear::Create(3, 2, rng).value());
  }
  Tensor operator()(const Tensor& x) const {
    return (*linear_)(x + shift_) * scale_;
  }

 private:
  Tensor scale_, shift_;
  std::shared_ptr<Linear> linear_;
};

NamedTensors All(const Module& m) {
  NamedTensors all = m.NamedParameters(), bufs = m.NamedBuffers();
  all.insert(all.end(), bufs.begin(), bufs.end());
  return all;
}

TEST(ModuleTo, ConvertsEveryParameterAndBufferInPlace) {
  Rng rng(1), twin_rng(1);
  Shifted m(rng), twin(twin_rng);
  EXPECT_EQ(m.dtype(), kFloat64);
  const NamedTensors handles = All(m);  // copies share the storage
  ASSERT_EQ(handles.size(), 4u);
  std::vector<std::vector<double>> before;
  for (const auto& [name, t] : handles) before.push_back(t.ToVector());

  m.To(kFloat32);
  EXPECT_EQ(m.dtype(), kFloat32);
  const NamedTensors after = All(m);
  for (size_t k = 0; k < handles.size(); ++k) {
    const auto& [name, h] = handles[k];
    EXPECT_EQ(after[k].first, name);
    EXPECT_EQ(h.dtype(), kFloat32) << name;  // the old handle sees it
    EXPECT_EQ(h.raw_data(), after[k].second.raw_data()) << name;
    EXPECT_EQ(h.requires_grad(), k < 3) << name;  // 3 parameters, 1 buffer
    for (int64_t i = 0; i < h.numel(); ++i)
      EXPECT_EQ(h.data<float>()[i], static_cast<float>(before[k][i]))
          << name << "[" << i << "]";
  }

  // It computes in float32, as its float64 twin to float32 rounding, and
  // its gradients are float32.
  const Tensor x = Tensor::Randn({4, 3}, rng);
  Tensor y32 = m(Cast(x, kFloat32)), y64 = twin(x);
  ASSERT_EQ(y32.dtype(), kFloat32);
  for (int64_t i = 0; i < y64.numel(); ++i)
    EXPECT_LT(testing::Float32Err(y32[i], y64[i]), testing::Float32Tol(3)) << i;
  Backward(Sum(Square(y32)));
  Tape::Get().Reset();
  for (const auto& [name, p] : m.NamedParameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().dtype(), kFloat32) << name;
  }

  // Back to float64: exactly the float32 values.
  m.To(kFloat64);
  EXPECT_EQ(m.dtype(), kFloat64);
  for (size_t k = 0; k < handles.size(); ++k) {
    const Tensor& h = handles[k].second;
    ASSERT_EQ(h.dtype(), kFloat64);
    for (int64_t i = 0; i < h.numel(); ++i)
      EXPECT_EQ(h.data<double>()[i],
                static_cast<double>(static_cast<float>(before[k][i])));
  }
}

// Parameters of two dtypes (one converted behind the module's back): dtype()
// dies naming both.
TEST(ModuleToDeathTest, MixedParameterDTypesDie) {
  auto run = [] {
    Rng rng(1);
    Shifted m(rng);
    m.NamedParameters()[1].second.storage()->ConvertTo(kFloat32);
    m.dtype();
  };
  EXPECT_DEATH(run(),
               "parameter 'linear.weight' is float32, 'scale' is "
               "float64");
}

}  // namespace
}  // namespace flowtape::nn
