"""The package's import graph, read from the source: no cycles, no lazy imports, folders imported one way.

Needs nothing but the standard library. Lazy imports of other packages (huggingface_hub, safetensors'
writer, tqdm) are allowed.
"""

import ast
import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nanobark", "weights_convert")

# The folders are the architecture: the files at the top of nanobark/ are Bark (the book); weights/ turns a
# name into tensors and modules; cli/ is the command. Imports run one way: book <- weights <- cli.
# train/ is fine-tuning (scripts/train.py): it runs the book's own context code and writes model folders as
# weights/ does, and the command's data preparation writes its clips: book <- weights <- train <- cli.
# serve/ is the HTTP server (`nanobark serve`), a command kept apart because it needs the serve extra (FastAPI).
SHELL = ("nanobark.weights", "nanobark.cli", "nanobark.train", "nanobark.serve")
# the networks are pure nn.Modules: they import only the configs, the token layout and each other
NETWORKS = {"nanobark.gpt", "nanobark.fine", "nanobark.codec", "nanobark.hubert", "nanobark.quantizer"}
GROUND = {"nanobark.config", "nanobark.layout"}
# what weights/ may use of the book: the ground, the networks it builds, the file discipline, the voice errors
WEIGHTS_USES = GROUND | NETWORKS | {"nanobark.files", "nanobark.voices"}
# the book's only doors to disk, as whisper's load_model calls _download: Bark.from_pretrained, clone_voice
DOORS = {"nanobark.bark", "nanobark.cloning"}
# entry points that run the command
ENTRIES = {"nanobark.__main__", "weights_convert.convert"}
# the one import allowed inside a function elsewhere, and why
DEFERRED = {("nanobark.__main__", "nanobark.cli"): "a Ctrl-C while torch loads ends the command quietly"}
# the commands import the model (and so torch) inside their bodies, once their arguments are read, so that
# --help, --version and argparse's usage errors answer at once (test_cli checks torch is not imported for them)
COMMAND_BODIES = {
    "nanobark.cli.speak",
    "nanobark.cli.synthesize",
    "nanobark.cli.convert",
    "nanobark.cli.prepare",
    "nanobark.cli.serve",
}


def part(name):
    """'book', 'weights', 'cli' or 'other' (weights_convert, the entry points)."""
    if name in ENTRIES or not name.startswith("nanobark"):
        return "other"
    for folder in SHELL:
        if name == folder or name.startswith(folder + "."):
            return folder.rpartition(".")[2]
    return "book"


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
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
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


def test_package_imports_are_at_the_top_of_their_file():
    for a, targets in graph().items():
        for b, at_top in targets:
            assert at_top or (a, b) in DEFERRED or a in COMMAND_BODIES, (
                f"{a} imports {b} inside a function: package imports go at the top of the file"
            )


def test_the_book_never_imports_the_command():
    for a, targets in graph().items():
        for b, _ in targets:
            assert part(b) != "cli" or part(a) == "cli" or a in ENTRIES, (
                f"{a} imports {b}: only the command's own files (and its entry points) import nanobark/cli/"
            )


def test_only_the_command_imports_the_server():
    """nanobark/serve/ needs the serve extra (FastAPI): nothing else may need it, but `nanobark serve`."""
    for a, targets in graph().items():
        for b, _ in targets:
            assert part(b) != "serve" or part(a) == "serve" or a == "nanobark.cli.serve", (
                f"{a} imports {b}: only nanobark/serve/ itself and the serve command import nanobark/serve/"
            )


def test_the_book_reaches_weights_only_through_its_two_doors():
    for a, targets in graph().items():
        for b, _ in targets:
            if part(a) == "book" and part(b) == "weights":
                assert a in DOORS, f"{a} imports {b}: the book loads files only through {' and '.join(sorted(DOORS))}"


def test_weights_use_only_the_ground_and_the_networks_of_the_book():
    for a, targets in graph().items():
        for b, _ in targets:
            if part(a) == "weights" and part(b) == "book" and b != "nanobark":
                assert b in WEIGHTS_USES, f"{a} imports {b}: weights/ builds networks, it never runs them"


def test_training_sits_between_weights_and_the_command():
    for a, targets in graph().items():
        for b, _ in targets:
            if part(b) == "train":
                assert part(a) in ("train", "cli"), f"{a} imports {b}: only train/, cli/ and scripts use train/"
            if part(a) == "train":
                assert part(b) != "cli", f"{a} imports {b}: train/ uses the book and weights/, never the command"


def test_the_networks_are_pure_modules():
    for a in NETWORKS:
        for b, _ in graph()[a]:
            assert b in GROUND | NETWORKS, f"{a} imports {b}: a network imports only configs, layout and networks"


def test_the_readme_layout_table_names_every_file():
    """A newcomer follows the README's table: every module of the package has its line there."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = readme[readme.index("## Layout") :]
    for name, path in modules().items():
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        folder = os.path.dirname(rel) + "/"
        listed = f"`{rel}`" in table or (folder != "nanobark/" and f"`{folder}`" in table)
        assert listed, f"{rel} is missing from the README's layout table"


def test_setup_cfg_installs_every_package_folder():
    """A folder missing from setup.cfg's `packages` is left out of the wheel: its imports then fail only once
    installed (nanobark/train/, imported by `nanobark prepare`, was missed once)."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    listed = {p.strip() for p in cfg["options"]["packages"].split(",")}
    folders = {name for name, path in modules().items() if path.endswith("__init__.py") and name.startswith("nanobark")}
    assert folders == listed, f"setup.cfg's packages differ from the package folders: {sorted(folders ^ listed)}"
