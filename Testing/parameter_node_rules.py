"""The rules of Slicer's parameterNodeWrapper, restated from its documentation (developer guide,
"Parameter Nodes": supported types, defaults, GUI connection), as checks that name the field:
a Union of node types must include None (a node field's default is None, which the wrapper
writes when it wraps a node), only the documented types are serialised, a default Path()
shows "." in the path box, and each widget the .ui binds needs a GUI connector for that
widget class and field type."""
from __future__ import annotations

import enum
import pathlib
import typing

import slicer

SIMPLE_TYPES = (int, float, bool, str)
PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath, pathlib.PurePosixPath,
              pathlib.PureWindowsPath)
# GUI connectors of Slicer's parameterNodeWrapper, by widget class: the field types each binds
GUI_CONNECTORS = {
    "qMRMLNodeComboBox": "node", "qMRMLSubjectHierarchyTreeView": "node",
    "QCheckBox": bool, "QPushButton": bool, "ctkCheckBox": bool,
    "QLineEdit": str, "QComboBox": (str, "enum"), "ctkComboBox": (str, "enum"),
    "ctkPathLineEdit": "path",  # pathlib types only, not Optional[...] and not str
    "QSpinBox": int, "QDoubleSpinBox": float, "ctkSliderWidget": float,
    "ctkDoubleSpinBox": float, "QSlider": int, "qMRMLSliderWidget": float, "ctkRangeWidget": "range",
}


def is_node_type(t) -> bool:
    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


def _field_problem(name: str, t, has_default: bool, default) -> str | None:
    """Why Slicer's parameterNodeWrapper cannot hold field ``name`` of type ``t``, or None."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Annotated:
        return _field_problem(name, args[0], has_default, default)
    if origin is typing.Union:
        members = [a for a in args if a is not type(None)]
        if all(is_node_type(a) for a in members):
            if type(None) not in args:  # the default of a node field is None, which must be writable
                return (f"{name}: a Union of node types must include None "
                        f"(Union[{', '.join(a.__name__ for a in members)}, None])")
            return None
        for a in members:  # a Union (or Optional) of supported types
            if p := _field_problem(name, a, has_default and type(None) not in args, default):
                return p
        return None
    if origin in (list, tuple, dict):
        for a in args:
            if a is not Ellipsis and (p := _field_problem(name, a, False, None)):
                return p
        return None
    if is_node_type(t) or t in SIMPLE_TYPES or t in PATH_TYPES:
        if t in PATH_TYPES and has_default and str(default) == ".":
            return f"{name}: the default Path() shows '.' in the path box; default to None (Optional[Path])"
        return None
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return None
    return f"{name}: type {t!r} has no serializer in Slicer's parameterNodeWrapper"


def parameter_node_problems(cls) -> list[str]:
    """The fields of a parameter node class that Slicer's parameterNodeWrapper refuses or shows badly."""
    hints = typing.get_type_hints(cls, include_extras=True)
    problems = []
    for name, t in hints.items():
        has_default = name in cls.__dict__
        p = _field_problem(name, t, has_default, cls.__dict__.get(name))
        if p:
            problems.append(p)
    return problems


def gui_binding_problems(cls, ui_widgets: dict[str, str]) -> list[str]:
    """Fields bound in the .ui (``SlicerParameterName``: widget class) without a GUI connector
    for that widget class and field type."""
    hints = typing.get_type_hints(cls, include_extras=True)
    problems = []
    for field, widget in ui_widgets.items():
        if widget not in GUI_CONNECTORS:
            problems.append(f"{field}: no GUI connector for {widget}")
            continue
        t = hints.get(field)
        if typing.get_origin(t) is typing.Annotated:
            t = typing.get_args(t)[0]
        if typing.get_origin(t) is typing.Union:  # node combo boxes take a Union of nodes (with None)
            members = [a for a in typing.get_args(t) if a is not type(None)]
            if all(is_node_type(a) for a in members):
                t = members[0] if len(members) == 1 else members
        kinds = GUI_CONNECTORS[widget]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        ok = (("node" in kinds and (isinstance(t, list) or is_node_type(t)))
              or ("path" in kinds and t in PATH_TYPES)
              or ("enum" in kinds and isinstance(t, type) and issubclass(t, enum.Enum))
              or (t in kinds))
        if not ok:
            problems.append(f"{field}: {widget} cannot show a field of type {t!r}")
    return problems


