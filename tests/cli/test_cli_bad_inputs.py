"""Every command turns every bad input (arrays, output paths, user modules, names) into one
line on stderr and exit status 1: never a traceback, never an internal error."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import pytest

import snnir
from snnir.cli.main import main
from snnir.ir import LIF, Affine, Graph, Input, Output, Semantics

SEM = Semantics(dt=1e-3, discretisation="exp", reset="subtract")


def lif(size: int) -> LIF:
    return LIF(tau=np.full(size, 0.01), r=np.array(5.0), v_leak=np.array(0.0), v_threshold=np.array(1.0), sem=SEM)


def two_inputs() -> Graph:
    """Inputs ``a`` [3] and ``b`` [3], summed into one layer."""
    return Graph(
        {"a": Input((3,)), "b": Input((3,)), "fc": Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), "lif": lif(2),
         "y": Output()},
        [("a", "fc"), ("b", "fc"), ("fc", "lif"), ("lif", "y")],
    )


@pytest.fixture
def files(tmp_path):
    """A one-input and a two-input NIR file, and a good input for the first."""
    one = Graph.sequential(("x", Input((3,))), ("fc", Affine(weight=np.ones((2, 3)), bias=np.zeros(2))),
                           ("lif", lif(2)), ("y", Output()))
    snnir.write(one, tmp_path / "one.nir")
    snnir.write(two_inputs(), tmp_path / "two.nir")
    np.save(tmp_path / "good.npy", np.ones((4, 1, 3)))
    return tmp_path


def assert_one_line_error(capsys, command: str, *expected: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith(f"snnir {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for text in expected:
        assert text in err, (text, err)
    return err


def _npy_header(path, shape, descr="<f8", payload=b""):
    with open(path, "wb") as stream:
        npy_format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": False, "shape": shape})
        stream.write(payload)


def _write_bad_input(name: str, path) -> None:
    """The bad input ``name`` at ``path`` (one Input ``x`` of shape [3])."""
    if name == "empty":
        path.write_bytes(b"")
    elif name == "not numpy":
        path.write_bytes(b"hello, world")
    elif name == "object npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif name == "object in npz":
        with open(path, "wb") as stream:
            np.savez(stream, x=np.array([1, None], dtype=object))
    elif name == "complex":
        np.save(path, np.ones((4, 1, 3), dtype=complex))
    elif name == "structured":
        np.save(path, np.zeros((4, 1, 3), dtype=[("v", "<f8")]))
    elif name == "text":
        np.save(path, np.full((4, 1, 3), "1.0"))
    elif name == "dates":
        np.save(path, np.zeros((4, 1, 3), dtype="datetime64[s]"))
    elif name == "float128":
        np.save(path, np.ones((4, 1, 3), dtype=np.longdouble))
    elif name == "huge ints":
        np.save(path, np.full((4, 1, 3), 2**60))
    elif name == "huge header":
        _npy_header(path, (10**6, 10**6, 3), payload=b"\0" * 64)
    elif name == "truncated":
        _npy_header(path, (4, 1, 3), payload=b"\0" * 20)
    elif name == "bad header":
        path.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz',}\n")
    elif name == "corrupt npz":
        path.write_bytes(b"PK\x03\x04" + b"\xff" * 100)
    elif name == "empty npz":
        with zipfile.ZipFile(path, "w"):
            pass
    elif name == "wrong shape":
        np.save(path, np.ones((4, 1, 5)))
    elif name == "no time axis":
        np.save(path, np.ones((1, 3)))
    elif name == "NaN":
        np.save(path, np.full((4, 1, 3), np.nan))
    elif name == "inf":
        np.save(path, np.full((4, 1, 3), np.inf))
    elif name == "npz missing key":
        with open(path, "wb") as stream:
            np.savez(stream, z=np.ones((4, 1, 3)))
    elif name == "npz extra key":
        with open(path, "wb") as stream:
            np.savez(stream, x=np.ones((4, 1, 3)), extra=np.ones((4, 1, 3)))
    elif name == "directory":
        path.mkdir()
    elif name != "missing":
        raise AssertionError(name)


BAD_INPUTS = [
    ("empty", "is empty"), ("not numpy", "neither a .npy nor a .npz"), ("object npy", "pickled objects are refused"),
    ("object in npz", "pickled objects are refused"), ("complex", "complex numbers"),
    ("structured", "records with named fields"), ("text", "holds text"), ("dates", "dates"),
    ("float128", "more precise than the float64"), ("huge ints", "beyond 2**53"),
    ("huge header", "more than the limit data_bytes"), ("truncated", "is truncated"), ("bad header", "not a valid .npy"),
    ("corrupt npz", "not a valid .npz"), ("empty npz", "holds no arrays"),
    ("wrong shape", "node 'x': input must have shape [T, B, 3], got [4, 1, 5]"), ("no time axis", "node 'x'"),
    ("NaN", "node 'x': input contains NaN"), ("inf", "node 'x': input contains NaN or inf"),
    ("npz missing key", "missing input"), ("npz extra key", "no Input node named ['extra']"),
    ("directory", "is a directory"), ("missing", "no such input file"),
]


@pytest.mark.parametrize("command", ["run", "plot", "check"])
@pytest.mark.parametrize("case, expected", BAD_INPUTS, ids=[case for case, _ in BAD_INPUTS])
def test_bad_input_arrays(files, capsys, command, case, expected):
    if command in ("plot", "check"):
        pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    if case == "float128" and np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("this platform's long double is float64")
    bad = files / "bad.npz" if "npz" in case else files / "bad.npy"
    _write_bad_input(case, bad)
    out = files / ("out.npz" if command == "run" else "out.png")
    written = ["--plot", str(out)] if command == "check" else ["-o", str(out)]
    assert main([command, str(files / "one.nir"), "--input", str(bad), *written]) == 1
    assert_one_line_error(capsys, command, expected)
    assert not out.exists()


@pytest.mark.parametrize("command", ["plot", "check"])
@pytest.mark.parametrize("shape, expected", [((0, 2, 3), "no time steps (T=0)"), ((4, 0, 3), "no samples (B=0)")],
                         ids=["T=0", "B=0"])
def test_plot_and_check_of_an_empty_input(files, capsys, command, shape, expected):
    """``run`` accepts an input with no steps or samples; plot and check say they have nothing to show."""
    pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    np.save(files / "empty.npy", np.ones(shape))
    out = files / "out.png"
    written = ["--plot", str(out)] if command == "check" else ["-o", str(out)]
    assert main([command, str(files / "one.nir"), "--input", str(files / "empty.npy"), *written]) == 1
    assert_one_line_error(capsys, command, expected, "nothing to show")
    assert not out.exists()


@pytest.mark.parametrize("arrays, expected", [
    ({"a": np.ones((4, 1, 3))}, "node 'b': missing input"),
    ({"a": np.ones((4, 1, 3)), "b": np.ones((4, 1, 3)), "c": np.ones((4, 1, 3))}, "no Input node named ['c']"),
    ({"a": np.ones((4, 1, 3)), "b": np.ones((4, 1, 2))}, "node 'b': input must have shape [T, B, 3], got [4, 1, 2]"),
    ({"a": np.ones((4, 1, 3)), "b": np.ones((5, 1, 3))}, "node 'b': inputs disagree on [T, B]"),
], ids=["missing", "extra", "wrong shape", "disagreeing T"])
def test_multi_input_npz_names_the_input(files, capsys, arrays, expected):
    np.savez(files / "x.npz", **arrays)
    assert main(["run", str(files / "two.nir"), "--input", str(files / "x.npz"), "-o", str(files / "o.npz")]) == 1
    assert_one_line_error(capsys, "run", expected)


def test_good_multi_input_npz_runs_and_saves_any_output_name(files, capsys):
    graph = two_inputs()
    graph = graph.with_nodes(file=Output()).replace(edges=graph.edges + (("lif", "file"),))  # savez's own argument
    snnir.write(graph, files / "file.nir")
    np.savez(files / "x.npz", a=np.ones((4, 1, 3)), b=np.full((4, 1, 3), 2.0))
    assert main(["run", str(files / "file.nir"), "--input", str(files / "x.npz"), "-o", str(files / "o")]) == 0
    assert "wrote 2 arrays to" in capsys.readouterr().out
    with np.load(files / "o", allow_pickle=False) as saved:  # exactly the path given, no .npz added
        assert set(saved.files) == {"y", "file"}


@pytest.mark.parametrize("out", ["x.txt", "x.npy", "x.NIR"])
def test_run_refuses_an_output_suffix_other_than_npz(files, capsys, monkeypatch, out):
    """``-o x.txt`` got an .npz archive under the name of a text file."""
    monkeypatch.chdir(files)
    assert main(["run", "one.nir", "--input", "good.npy", "-o", out]) == 1
    assert_one_line_error(capsys, "run", f"cannot write {out}: run writes an .npz archive of arrays, "
                                         f"not a {Path(out).suffix} file (name it .npz)")
    assert not os.path.exists(out)
    assert main(["run", "one.nir", "--input", "good.npy", "-o", "x.NPZ"]) == 0


def _commands_writing(out: str) -> dict[str, list[str]]:
    return {
        "run": ["run", "one.nir", "--input", "good.npy", "-o", out],
        "plot": ["plot", "one.nir", "--input", "good.npy", "-o", out],
        "check": ["check", "one.nir", "--input", "good.npy", "--plot", out],
        "compile": ["compile", "one.nir", "--target", "torch", "-o", out],
        "optimize": ["optimize", "one.nir", "-o", out],
        "convert": ["convert", "one.nir", out],
        "export": ["export", "builder.py:build", "--input-shape", "1,3", "-o", out],
    }


BAD_OUTPUTS = [("missing/out.x", "does not exist"), ("afile/out.x", "is a file"), ("adir", "it is a directory")]


@pytest.mark.parametrize("command", list(_commands_writing("")))
@pytest.mark.parametrize("out, expected", BAD_OUTPUTS, ids=["missing dir", "parent is a file", "is a dir"])
def test_bad_output_paths(files, capsys, monkeypatch, command, out, expected):
    if command in ("plot", "check"):
        pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    monkeypatch.chdir(files)
    (files / "afile").write_text("")
    (files / "adir").mkdir()
    (files / "builder.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    out = out.replace(".x", ".py") if command == "compile" else out
    assert main(_commands_writing(out)[command]) == 1
    assert_one_line_error(capsys, command, expected)


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and symlinks as POSIX has them")
@pytest.mark.parametrize("command", ["run", "optimize", "convert"])
def test_output_to_a_fifo_or_symlink_keeps_it(files, capsys, monkeypatch, command):
    """``-o`` to a FIFO (as to /dev/null) writes into it, and to a symlink writes where it points:
    neither is replaced by a regular file."""
    from tests.test_atomic import read_fifo_in_background

    monkeypatch.chdir(files)
    os.mkfifo("pipe")
    reader, got = read_fifo_in_background("pipe")
    assert main(_commands_writing("pipe")[command]) == 0
    reader.join(10)
    assert got and got[0] and os.path.exists("pipe") and not os.path.isfile("pipe")
    suffix = ".npz" if command == "run" else ".nir"
    os.symlink(f"real{suffix}", f"link{suffix}")
    assert main(_commands_writing(f"link{suffix}")[command]) == 0
    assert os.path.islink(f"link{suffix}") and os.path.getsize(f"real{suffix}") == len(got[0])
    capsys.readouterr()


OVER_INPUTS = [
    (["run", "one.nir", "--input", "good.npy", "-o", "one.nir"], "one.nir"),
    (["run", "one.nir", "--input", "good.npy", "-o", "good.npy"], "good.npy"),
    (["run", "one.nir", "--input", "good.npy", "-o", "link.npz"], "good.npy"),
    (["plot", "one.nir", "--input", "good.npy", "-o", "one.nir"], "one.nir"),
    (["check", "one.nir", "--input", "good.npy", "--plot", "good.npy"], "good.npy"),
    (["optimize", "one.nir", "-o", "one.nir"], "one.nir"),
    (["convert", "one.nir", "./one.nir"], "one.nir"),
    (["compile", "one.safetensors", "-o", "one.py"], "one.safetensors"),
    (["compile", "out/graph.nir", "--target", "ipu", "-o", "out"], "out/graph.nir"),
    (["export", "builder.py:build", "--input-shape", "1,3", "-o", "builder.py"], "builder.py"),
]


@pytest.mark.parametrize("command, lost", OVER_INPUTS, ids=[" ".join(c[:1] + c[-2:]) for c, _ in OVER_INPUTS])
def test_output_over_an_input_is_refused(files, capsys, monkeypatch, command, lost):
    """No command overwrites a file it reads (the same file by another name or a link included)."""
    if command[0] in ("plot", "check"):
        pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    monkeypatch.chdir(files)
    (files / "builder.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    (files / "out").mkdir()
    for copy in ("one.safetensors", "out/graph.nir"):
        (files / copy).write_bytes((files / "one.nir").read_bytes())
    os.symlink("good.npy", "link.npz")
    before = (files / lost).read_bytes()
    assert main(command) == 1
    assert_one_line_error(capsys, command[0], "it is the input", "would be lost")
    assert (files / lost).read_bytes() == before


@pytest.mark.parametrize("command", [["convert", "one.nir", "missing/../one.nir"], ["optimize", "one.nir", "-o", "one.nir/"],
                                     ["convert", "one.nir", "one.nir/."]], ids=lambda c: " ".join(c))
def test_output_the_system_cannot_open_is_not_the_input(files, capsys, monkeypatch, command):
    """Output names that resolve onto the input only lexically replaced it (exit 0)."""
    monkeypatch.chdir(files)
    before = (files / "one.nir").read_bytes()
    assert main(command) == 1
    assert_one_line_error(capsys, command[0], "cannot write")
    assert (files / "one.nir").read_bytes() == before and not (files / "missing").exists()


@pytest.mark.parametrize("target", ["onnx", "ipu", "torch"])
def test_compile_to_an_empty_output_path(files, capsys, monkeypatch, target):
    """``-o ""`` wrote the onnx and ipu targets' files into the current directory."""
    monkeypatch.chdir(files)
    before = sorted(os.listdir(files))
    assert main(["compile", "one.nir", "--target", target, "-o", ""]) == 1
    assert_one_line_error(capsys, "compile", "''" if target != "torch" else "empty path")
    assert sorted(os.listdir(files)) == before


@pytest.mark.parametrize("target", ["onnx", "ipu"])
def test_compile_output_dir_that_is_a_file(files, capsys, target):
    (files / "afile").write_text("")
    assert main(["compile", str(files / "one.nir"), "--target", target, "-o", str(files / "afile")]) == 1
    assert_one_line_error(capsys, "compile", "it is a file")


def _read_only_file_system() -> str | None:
    """A directory where nobody, root included, can create files (Linux's /sys), or None."""
    if not (sys.platform.startswith("linux") and os.path.isdir("/sys")):
        return None
    try:
        os.close(os.open("/sys/.snnir-probe", os.O_CREAT | os.O_WRONLY))
    except OSError:
        return "/sys"
    os.unlink("/sys/.snnir-probe")
    return None


@pytest.mark.parametrize("place", ["read-only directory", "read-only file system"])
@pytest.mark.parametrize("command", list(_commands_writing("")))
def test_unwritable_places(files, capsys, monkeypatch, command, place):
    if command in ("plot", "check"):
        pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    if place == "read-only directory":
        if os.name != "posix" or os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        (files / "ro").mkdir(mode=0o555)
        directory, expected = "ro", "permission denied"
    else:
        directory = expected = _read_only_file_system()
        if directory is None:
            pytest.skip("no read-only file system to write into (Linux's /sys)")
    monkeypatch.chdir(files)
    (files / "builder.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    out = f"{directory}/snnir-out.py" if command == "compile" else f"{directory}/snnir-out.x"
    assert main(_commands_writing(out)[command]) == 1
    assert_one_line_error(capsys, command, expected)


USER_MODULES = [
    ("def build():\n    raise ValueError('no model today')\n", "build() failed: ValueError: no model today"),
    ("import sys\ndef build():\n    sys.exit(0)\n", "build() called sys.exit(0)"),
    ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    ("raise RuntimeError('at import')\n", "failed: RuntimeError: at import"),
    ("def build(:\n", "SyntaxError"),
    ("class Odd(BaseException):\n    pass\ndef build():\n    raise Odd('odd')\n", "build() failed: Odd: odd"),
    ("def build():\n    return 42\n", "returned int, not a torch.nn.Module"),
    ("build = 3\n", "defines no function 'build'"),
    ("x = 1\n", "defines no function 'build'"),
    ("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        raise KeyError('oops')\n"
     "def build():\n    return M()\n", "forward failed while tracing: KeyError"),
]


@pytest.mark.parametrize("source, expected", USER_MODULES,
                         ids=["raises", "exit0", "exit at import", "raise at import", "syntax", "base exception",
                              "not a module",
                              "not callable", "missing", "forward raises"])
def test_export_user_modules(tmp_path, capsys, source, expected):
    (tmp_path / "user.py").write_text(source)
    out = tmp_path / "out.nir"
    assert main(["export", f"{tmp_path / 'user.py'}:build", "--input-shape", "1,3", "-o", str(out)]) == 1
    assert_one_line_error(capsys, "export", expected)
    assert not out.exists()


def test_export_refuses_a_huge_sample_before_allocating(tmp_path, capsys):
    (tmp_path / "user.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    args = ["export", f"{tmp_path / 'user.py'}:build", "--input-shape", "99999999999,3", "-o", str(tmp_path / "o.nir")]
    assert main(args) == 1
    assert_one_line_error(capsys, "export", "the sample input of shape [99999999999, 3] needs", "data_bytes")


def test_export_judges_a_negative_shape_given_as_its_own_word(tmp_path, capsys):
    """``--input-shape -1,8`` (argparse alone said 'expected one argument') reaches the shape's own check."""
    (tmp_path / "user.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(8, 2)\n")
    args = ["export", f"{tmp_path / 'user.py'}:build", "--input-shape", "-1,8", "-o", str(tmp_path / "o.nir")]
    assert main(args) == 1
    assert_one_line_error(capsys, "export", "--input-shape needs a batch and at least one positive dimension")
    assert not (tmp_path / "o.nir").exists()


@pytest.mark.parametrize("spec, expected", [("nofile.py:build", "no such file"), ("nocolon", "expected FILE.py"),
                                            ("notes.txt:build", "is not a Python file")])
def test_export_bad_builder_specs(tmp_path, capsys, monkeypatch, spec, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x = 1\n")
    assert main(["export", spec, "--input-shape", "1,3", "-o", "out.nir"]) == 1
    assert_one_line_error(capsys, "export", expected)


def test_usage_errors_are_one_line_exit_1(files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(files / "one.nir")])
    assert exit_info.value.code == 1
    assert_one_line_error(capsys, "run", "required: --input")


def test_huge_header_in_a_real_process_is_refused_fast(files):
    _npy_header(files / "huge.npy", (10**6, 10**6, 3))
    result = subprocess.run(
        [sys.executable, "-m", "snnir.cli", "run", str(files / "one.nir"), "--input", str(files / "huge.npy"),
         "-o", str(files / "o.npz")], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "21.8 TiB" in result.stderr


NASTY = {"esc\x1b[31mred": "esc\\x1b[31mred", "new\nline": "new\\nline", "tab\there": "tab\\there",
         "bidi\u202eevil": "bidi\\u202eevil", "n" * 300: "...[234 more]..."}


def test_inspect_shows_names_escaped_and_cut(tmp_path, capsys):
    names = list(NASTY)
    steps = [(names[0], Input((2,)))] + [(n, Affine(weight=np.eye(2), bias=np.zeros(2))) for n in names[1:]]
    snnir.write(Graph.sequential(*steps, ("y", Output())), tmp_path / "nasty.nir")
    assert main(["inspect", str(tmp_path / "nasty.nir")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\t" not in out
    for raw, escaped in NASTY.items():
        assert escaped in out and raw not in out
    assert max(len(line) for line in out.splitlines()) < 400


def test_errors_show_node_names_escaped(files, capsys):
    graph = Graph.sequential(("in\nput", Input((3,))), ("y", Output()))
    snnir.write(graph, files / "nl.nir")
    np.save(files / "x.npy", np.ones((4, 1, 2)))
    assert main(["run", str(files / "nl.nir"), "--input", str(files / "x.npy"), "-o", str(files / "o.npz")]) == 1
    assert_one_line_error(capsys, "run", "node 'in\\nput'")
    assert str(snnir.SnnirError("bad", "\x1b[2J" + "x" * 500)).startswith("node '\\x1b[2Jxxx")
    assert str(snnir.SnnirError("quoting 'a\nb'")) == "quoting 'a\\nb'"  # any message stays one line


def test_verify_errors_show_edge_names_escaped():
    graph = Graph({"x": Input((2,)), "y": Output()}, [("x", "y"), ("x\x1b[2J", "y")])
    with pytest.raises(snnir.SnnirError) as error:
        snnir.verify(graph)
    assert "edge x\\x1b[2J -> y" in str(error.value) and "\x1b" not in str(error.value)


def test_warnings_are_one_line_each(fixtures_dir, tmp_path, capsys):
    assert main(["optimize", str(fixtures_dir / "lif_norse.nir"), "-o", str(tmp_path / "o.nir")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("snnir optimize: warning: ") for line in err), err


@pytest.mark.parametrize("command", ["optimize", "convert", "export"])
def test_a_nir_writing_command_refuses_another_suffix_and_keeps_the_file(files, capsys, monkeypatch, command):
    """export, optimize and convert replaced precious.npy (or .png, .npz) with a NIR file, exit 0."""
    monkeypatch.chdir(files)
    (files / "builder.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    Path("precious.npy").write_bytes(b"kept")
    assert main(_commands_writing("precious.npy")[command]) == 1
    assert_one_line_error(capsys, command, f"cannot write precious.npy: {command} writes a NIR file, not a .npy "
                                           "file (name it .nir)")
    assert Path("precious.npy").read_bytes() == b"kept"


@pytest.mark.parametrize("command", ["run", "optimize"])
def test_an_existing_file_of_no_suffix_is_kept_unless_it_is_what_the_command_writes(files, capsys, monkeypatch,
                                                                                    command):
    """run -o NOTES replaced a text file NOTES with a zip archive, exit 0; one the command wrote
    itself is replaced."""
    monkeypatch.chdir(files)
    Path("NOTES").write_text("my notes")
    assert main(_commands_writing("NOTES")[command]) == 1
    what = "an .npz archive of arrays" if command == "run" else "a NIR file"
    assert_one_line_error(capsys, command, f"cannot write NOTES: it exists and is not {what}, so it would be lost")
    assert Path("NOTES").read_text() == "my notes"
    Path("NOTES").unlink()
    assert main(_commands_writing("NOTES")[command]) == 0
    assert main(_commands_writing("NOTES")[command]) == 0  # its own output, replaced
    capsys.readouterr()
