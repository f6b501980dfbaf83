"""The generated PopART custom ops compile (g++ -fsyntax-only) against a stub of the API.

The stub below is ours: the PopART/Poplar declarations the generated code
uses, with the signatures of the public PopART 3.x headers as we understand
them. This proves the generated C++ is well-formed and self-consistent; it
does not prove it builds against the real SDK (never available here).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from snnir.targets.ipu import codegen, compile_ipu

from .helpers import all_neurons_graph, semantics_cases

GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="g++ is not installed: cannot syntax-check the C++")

API_STUB = r"""#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace poplar {
enum class TypeId { FLOAT, HALF };
struct Type { TypeId id; bool operator!=(const Type &o) const { return id != o.id; } };
const Type FLOAT{TypeId::FLOAT};
struct DebugContext {
  DebugContext(const char *) {}
  DebugContext(const std::string &) {}
  DebugContext(const DebugContext &, const std::string &) {}
};
struct Interval { std::size_t begin, end; };
struct Tensor {
  std::vector<std::size_t> shape() const { return {}; }
  Type elementType() const { return FLOAT; }
  Tensor flatten() const { return *this; }
  Tensor slice(const Interval &) const { return *this; }
  Tensor reshape(const std::vector<std::size_t> &) const { return *this; }
};
struct ComputeSet {};
struct FieldRef {};
struct VertexRef { FieldRef operator[](const std::string &) const { return {}; } };
struct Graph {
  void addCodelets(const std::string &) {}
  Tensor clone(Type, const Tensor &t, const DebugContext &) { return t; }
  ComputeSet addComputeSet(const DebugContext &) { return {}; }
  std::vector<std::vector<Interval>> getTileMapping(const Tensor &) const { return {}; }
  VertexRef addVertex(ComputeSet, const std::string &) { return {}; }
  void connect(FieldRef, const Tensor &) {}
  void setTileMapping(VertexRef, unsigned) {}
};
namespace program {
struct Program {};
struct Execute : Program { Execute(ComputeSet, const DebugContext &) {} };
struct Sequence { void add(const Program &) {} };
}  // namespace program
}  // namespace poplar

namespace popops {
inline poplar::Tensor cast(poplar::Graph &, const poplar::Tensor &t, poplar::Type, poplar::program::Sequence &,
                           const poplar::DebugContext &) { return t; }
}
namespace poputil {
inline void broadcastToMatch(poplar::Tensor &, const std::vector<std::size_t> &) {}
}

namespace popart {
enum class DataType { FLOAT16, FLOAT };
using Shape = std::vector<long>;
struct TensorInfo {
  TensorInfo() = default;
  TensorInfo(DataType, const Shape &) {}
  Shape shape() const { return {}; }
};
struct OperatorIdentifier {
  OperatorIdentifier(const std::string &domain, const std::string &type, int version)
      : domain(domain), type(type), version(version) {}
  std::string domain, type;
  int version;
  bool operator<(const OperatorIdentifier &o) const { return type < o.type; }
};
struct Attributes {
  using String = std::string;
  using Float = float;
  template <class T> T getAttribute(const std::string &, const T &d) const { return d; }
};
struct OpSerialiserBase {
  void appendAttribute(const std::string &, const std::string &) {}
  void appendAttribute(const std::string &, float) {}
};
enum class GradOpInType { In = 0, Out, GradOut };
struct GradInOutMapper { GradInOutMapper(int, int, GradOpInType) {} };
class Op {
 public:
  struct Settings {};
  Settings settings;
  Op(const OperatorIdentifier &, const Settings &) {}
  virtual ~Op() = default;
  virtual std::unique_ptr<Op> clone() const = 0;
  virtual void setup() {}
  virtual std::vector<std::unique_ptr<Op>> getGradOps() { return {}; }
  virtual const std::vector<GradInOutMapper> &gradInputInfo() const { static std::vector<GradInOutMapper> v; return v; }
  virtual const std::map<int, int> &gradOutToNonGradIn() const { static std::map<int, int> m; return m; }
  virtual void appendOutlineAttributes(OpSerialiserBase &) const {}
  virtual float getSubgraphValue() const = 0;
  float getLowSubgraphValue() const { return 0.1f; }
  TensorInfo &inInfo(int) { static TensorInfo t; return t; }
  TensorInfo &outInfo(int) { static TensorInfo t; return t; }
};
struct OpDefinition {
  using DataTypes = std::vector<DataType>;
  using Inputs = std::vector<std::pair<std::string, DataTypes>>;
  using Outputs = std::vector<std::pair<std::string, DataTypes>>;
  using Attributes = std::map<std::string, std::string>;
  OpDefinition(Inputs, Outputs, Attributes) {}
};
using OpDefinitions = std::map<OperatorIdentifier, OpDefinition>;
struct OpCreatorInfo {
  OperatorIdentifier opid;
  Op::Settings settings;
  Attributes attributes;
};
template <class T> struct OpCreator {
  OpCreator(const OpDefinitions &,
            std::function<std::unique_ptr<Op>(const OpCreatorInfo &)>, bool) {}
};
namespace popx {
class Devicex;
class Opx {
 public:
  Opx(Op *, Devicex *) {}
  virtual ~Opx() = default;
  virtual void grow(poplar::program::Sequence &) const = 0;
  poplar::Graph &graph() const { static poplar::Graph g; return g; }
  const poplar::Tensor &getInTensor(int) const { static poplar::Tensor t; return t; }
  void setOutTensor(int, const poplar::Tensor &) const {}
  poplar::DebugContext debugContext(const std::string &name) const { return {name}; }
  template <class T> void verifyOp(Op *, const OperatorIdentifier &) {}
};
template <class T> struct OpxCreator { OpxCreator(const OperatorIdentifier &) {} };
}  // namespace popx
}  // namespace popart
"""

HEADERS = ("popart/op.hpp", "popart/opmanager.hpp", "popart/opserialiser.hpp", "popart/popx/opx.hpp",
           "popart/popx/opxmanager.hpp", "popops/Cast.hpp", "poputil/Broadcast.hpp")


def test_custom_ops_compile_against_api_stub(tmp_path):
    graph = all_neurons_graph(np.random.default_rng(0), semantics_cases()[7])
    out = compile_ipu(graph, tmp_path / "ipu")
    stub = tmp_path / "stub"
    (stub / "stub_api.hpp").parent.mkdir()
    (stub / "stub_api.hpp").write_text(API_STUB)
    for header in HEADERS:
        (stub / header).parent.mkdir(parents=True, exist_ok=True)
        (stub / header).write_text("#pragma once\n#include <stub_api.hpp>\n")
    result = subprocess.run(
        [GXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-Wno-unused-function", "-I", str(stub),
         "-I", str(out.out_dir), str(out.out_dir / codegen.CUSTOM_OPS)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
