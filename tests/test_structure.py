"""The package's import graph, read from the source: no cycles, no lazy imports inside nanobark, layers one way.

Needs nothing but the standard library. The layers below are the README's layout table's, grouped as the
code has them; lazy imports of other packages (huggingface_hub, safetensors' writer, tqdm) are allowed.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nanobark", "weights_convert")

# lowest first: a module may import modules of its own layer or below, never above
LAYERS = [
    (
        "ground",
        [
            "nanobark.layout",
            "nanobark.config",
            "nanobark.files",
            "nanobark.progress",
            "weights_convert.random_init",
        ],
    ),
    (
        "models",
        [
            "nanobark.gpt",
            "nanobark.fine",
            "nanobark.codec",
            "nanobark.hubert",
            "nanobark.quantizer",
            "nanobark.cpu_speed",
        ],
    ),
    (
        "algorithms",
        [
            "nanobark.sampling",
            "nanobark.tokenizer",
            "nanobark.audio",
            "nanobark.voices",
            "nanobark.generation",
            "nanobark.cloning",
            "nanobark.checkpoint",
            "nanobark.convert",
            "nanobark.convert.folder",
            "nanobark.convert.source",
            "nanobark.convert.gpt_keys",
            "nanobark.convert.codec_keys",
            "nanobark.convert.hubert_keys",
            "nanobark.convert.cloning",
        ],
    ),
    ("model files", ["nanobark.hub"]),
    ("api", ["nanobark.bark"]),
    ("jobs", ["nanobark.longform", "nanobark.manifest", "nanobark.corpus"]),
    (
        "entry points",
        [
            "nanobark",
            "nanobark.cli",
            "nanobark.__main__",
            "nanobark.convert.__main__",
            "weights_convert",
            "weights_convert.convert",
        ],
    ),
]
# the one import allowed inside a function, and why
DEFERRED = {("nanobark.__main__", "nanobark.cli"): "a Ctrl-C while torch loads ends the command quietly"}


def modules():
    """{dotted name: path} of every .py file under the packages."""
    out = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = os.path.join(folder, f)
    return out


def imports(name, path, known):
    """[(imported module, at module level?)] for the package modules that `name` imports.

    Importing a.b.c runs a/__init__.py and a/b/__init__.py first, so the packages around an imported module
    count as imported too, unless `name` lives inside them (its own packages are already running).
    "At module level" means outside any function or class: a top-level `try:` or `if` still counts.
    """
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
            )
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in child.names]
            else:
                visit(child, inner)
                continue
            for t in targets:
                parts = t.split(".")
                for k in range(1, len(parts) + 1):
                    m = ".".join(parts[:k])
                    if m in known and m != name and not (k < len(parts) and name.startswith(m + ".")):
                        found.append((m, not nested))

    visit(tree, False)
    return found


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    placed = [m for _, names in LAYERS for m in names]
    assert sorted(placed) == sorted(modules()), "add new modules to LAYERS (and to the README's layout table)"


def test_no_import_cycles():
    edges = {a: {b for b, _ in targets} for a, targets in graph().items()}
    state, stack = {}, []

    def visit(a):
        state[a] = "open"
        stack.append(a)
        for b in sorted(edges[a]):
            assert state.get(b) != "open", f"import cycle: {' -> '.join(stack[stack.index(b) :] + [b])}"
            if b not in state:
                visit(b)
        state[a] = "done"
        stack.pop()

    for a in sorted(edges):
        if a not in state:
            visit(a)


def test_imports_run_down_the_layers_at_module_level():
    layer = {m: i for i, (_, names) in enumerate(LAYERS) for m in names}
    for a, targets in graph().items():
        for b, at_top in targets:
            assert at_top or (a, b) in DEFERRED, (
                f"{a} imports {b} inside a function: package imports go at the top of the file"
            )
            assert layer[b] <= layer[a], (
                f"{a} ({LAYERS[layer[a]][0]}) imports {b} ({LAYERS[layer[b]][0]}), a layer above it"
            )


def test_the_readme_layout_table_names_every_file():
    """A newcomer follows the README's table: every module of the package has its line there."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = readme[readme.index("## Layout") :]
    for name, path in modules().items():
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        folder = os.path.dirname(rel) + "/"
        listed = f"`{rel}`" in table or (folder != "nanobark/" and f"`{folder}`" in table)
        assert listed, f"{rel} is missing from the README's layout table"
