"""Test-only stand-ins for the parts of the 3D Slicer *application* that the slicer-core wheel
does not carry, so the module file ``TotalFMSlicer/TotalFMSlicer.py`` imports unchanged and its
Logic and its own ``TotalFMSlicerTest`` run in pytest on real MRML.

What is real (slicer-core): the scene, every node, the Segmentations, Tables, Volumes, Markups,
Cameras, Layout and Application logics, and Slicer's own ``slicer.util``.

What is stood in, because it is the Qt application or lives only in Slicer's source tree:
- ``qt``: an inert module (the Widget is not built here; the Logic and Test use no Qt);
- ``slicer.app``: signal connections are recorded, ``processEvents`` is counted and delivers
  the clicks a test queued (as Qt's event queue delivers a click during a long call);
- ``slicer.mrmlScene``: a real ``vtkMRMLScene`` set up as the application does (application
  and layout logics: selection, interaction, layout, slice and 3D view nodes, one camera per
  3D view as the camera displayable manager would add);
- ``slicer.modules``: ``markups`` and ``cameras``, each with its real slicer-core logic;
- ``slicer.i18n``: ``tr`` and ``translate`` return the text;
- ``slicer.ScriptedLoadableModule``: the four base classes, with the parameter node kept as
  Slicer keeps it (a singleton ``vtkMRMLScriptedModuleNode`` per module);
- ``slicer.parameterNodeWrapper``: ``parameterNodeWrapper`` and ``Choice``. The wrapper checks
  the class against ``parameter_node_problems`` (the rules of Slicer's parameterNodeWrapper as
  its documentation states them, ``parameter_node_rules.py``) and, like Slicer's, writes every field's default when it
  wraps a node, so a field that cannot hold its own default fails here as it fails in Slicer;
- ``SampleData``: a source's ``file://`` URI (the module's bundled sample files) is read and
  checked by SHA-256 as SampleData does; a web URI is served from the pip-cached test data with
  the SHA-256 the source declares (no network in tests); loaded with the real Volumes logic;
- ``slicer.dicomDatabase`` (CTK's Qt ``ctkDICOMDatabase``): ``DicomDatabase``, a table of
  SOP Instance UID -> file that a test fills, answering ``fileForInstance`` as the real one
  does for the series a test "loaded from DICOM" (the node attribute ``DICOM.instanceUIDs``
  that Slicer's DICOM plugins set is set by the test);
- the widgets of the module's ``.ui`` file (``slicer.util.loadUI`` and ``childWidgetVariables``,
  the two Qt calls of slicer.util the Widget makes): one plain object per widget the file
  declares, with the properties the Widget reads and writes, and signals that tests emit by
  hand. So the Widget's own code (setup, Apply, polling, the handlers) runs on the real Logic
  and scene; what Qt would draw is not checked.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import sys
import types
import typing
import unittest
from pathlib import Path

import slicer
from parameter_node_rules import is_node_type, parameter_node_problems

MODULE_FILE = Path(__file__).resolve().parents[1] / "TotalFMSlicer" / "TotalFMSlicer.py"

class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def parameterNodeWrapper(cls):
    """Stand-in of Slicer's decorator: fields kept on the wrapped vtkMRMLScriptedModuleNode
    (nodes as references, the rest as parameters); every default written at wrapping."""
    problems = parameter_node_problems(cls)
    hints = typing.get_type_hints(cls, include_extras=True)

    def base(t):
        if typing.get_origin(t) is typing.Annotated:
            t = typing.get_args(t)[0]
        if typing.get_origin(t) is typing.Union:
            members = [a for a in typing.get_args(t) if a is not type(None)]
            return members[0] if len(members) == 1 else slicer.vtkMRMLNode
        return t

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            if problems:  # Slicer fails here too: writing a default its serializer cannot take
                raise TypeError("; ".join(problems))
            for name in hints:
                if not node.GetParameter(name) and not node.GetNodeReferenceID(name):
                    setattr(self, name, cls.__dict__.get(name))

        def __getattr__(self, name):
            if name not in hints:  # AddObserver, RemoveObserver, ...: the node's own, as Slicer's wrapper forwards
                return getattr(self.parameterNode, name)
            t, node = base(hints[name]), self.parameterNode
            if is_node_type(t):
                return node.GetNodeReference(name)
            text = node.GetParameter(name)
            if text == "" and t is not str:
                return None
            return {bool: lambda v: v == "True", int: int, float: float}.get(t, t)(text)

        def __setattr__(self, name, value):
            if name not in hints:
                raise AttributeError(f"{cls.__name__} has no field {name}")
            t, node = base(hints[name]), self.parameterNode
            if is_node_type(t):
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                node.SetParameter(name, "" if value is None else str(value))

        def connectGui(self, ui):
            return object()

        def disconnectGui(self, tag):
            pass

    Wrapper.__name__ = cls.__name__
    Wrapper.__qualname__ = cls.__qualname__
    Wrapper.__doc__ = cls.__doc__
    Wrapper.wrapped_class = cls
    return Wrapper


# ------------------------------------------------------------------ the application
class _Inert:
    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return _Inert()

    def __call__(self, *args, **kwargs):
        return _Inert()


def _qt_attribute(name: str):
    """Any Qt class is inert; module dunders (``__file__``, asked for by inspect) do not exist."""
    if name.startswith("__"):
        raise AttributeError(name)
    return _Inert()


class App:
    """slicer.app: what the module and its test use of the Qt application."""

    def __init__(self):
        self.connections = []
        self.events_processed = 0
        self.pending = []
        self.logic = slicer.vtkSlicerApplicationLogic()

    def connect(self, signal, slot):
        self.connections.append((signal, slot))

    def processEvents(self, *args):
        """Counted; delivers the clicks a test queued in ``pending`` (Qt's event queue)."""
        self.events_processed += 1
        while self.pending:
            self.pending.pop(0)()

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
        pass

    def testingEnabled(self):
        return True

    def topLevelWidgets(self):
        return []  # no main window: slicer.util.mainWindow() gives None, a dialog's parent then

    def applicationLogic(self):
        return self.logic


class _Module:
    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


def _add_cameras(scene) -> None:
    """One camera per 3D view, as Slicer's camera displayable manager adds them."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLViewNode")):
        view = scene.GetNthNodeByClass(i, "vtkMRMLViewNode")
        camera = scene.AddNewNodeByClass("vtkMRMLCameraNode")
        camera.SetLayoutName(view.GetLayoutName())


class DicomDatabase:
    """``slicer.dicomDatabase``: the file of each SOP Instance UID a test registered."""

    def __init__(self, files: dict[str, str] | None = None):
        self.files = dict(files or {})

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")


class SceneApp:
    """slicer.mrmlScene with the nodes the application keeps in it, restored after Clear."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.app = App()
        self.app.logic.SetMRMLScene(self.scene)
        self.colors = slicer.vtkSlicerColorLogic()  # the Volumes logic gives new volumes its colour tables
        self.colors.SetMRMLApplicationLogic(self.app.logic)
        self.colors.SetMRMLScene(self.scene)
        self.app.logic.SetModuleLogic("Colors", self.colors)
        self.layout = slicer.vtkMRMLLayoutLogic()
        self.layout.SetMRMLScene(self.scene)
        _add_cameras(self.scene)
        scene = self.scene
        self._observer = scene.AddObserver(slicer.vtkMRMLScene.EndCloseEvent, lambda *a: _add_cameras(scene))
        markups = slicer.vtkSlicerMarkupsLogic()
        markups.SetMRMLScene(self.scene)
        cameras = slicer.vtkSlicerCamerasModuleLogic()
        cameras.SetMRMLScene(self.scene)
        self.modules = types.SimpleNamespace(markups=_Module(markups), cameras=_Module(cameras))

    def close(self) -> None:
        """Break the scene's reference cycle and collect it here, on the main thread: a VTK object
        left to Python's cyclic collector may be freed on whichever thread the collector next
        runs, a worker's included, and VTK objects must not be deleted off the main thread."""
        import gc

        self.scene.RemoveObserver(self._observer)
        self.scene.Clear(0)
        gc.collect()


# ---------------------------------------------------------- ScriptedLoadableModule
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[:-len("Logic")] if type(self).__name__.endswith("Logic") else \
            type(self).__name__

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or types.SimpleNamespace(isEntered=True)
        self.layout = _Inert()

    def setup(self):
        pass

    def resourcePath(self, name: str) -> str:
        return str(MODULE_FILE.parent / "Resources" / name)


# ------------------------------------------------------------------- the .ui widgets
class Widget:
    """A widget of the .ui file: its properties as attributes, signals recorded by name."""

    def __init__(self, name: str, cls: str):
        self.objectName, self.className = name, cls
        self.text, self.toolTip, self.currentPath, self.enabled, self.value = "", "", "", True, 0
        self.lines: list[str] = []
        self.slots: dict[str, list] = {}

    def connect(self, signal, slot):
        self.slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        for slot in self.slots.get(signal, []):
            _call_slot(slot, args)

    def setMRMLScene(self, scene):
        self.scene = scene

    def appendPlainText(self, text):
        self.lines.append(text)

    def clear(self):
        self.lines = []


def _call_slot(slot, args):
    """As PythonQt calls a Python slot: with as many of the signal's arguments as it takes."""
    import inspect

    params = inspect.signature(slot).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return slot(*args)
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return slot(*args[:len(positional)])


class ComboBox(Widget):
    def __init__(self, name, cls):
        super().__init__(name, cls)
        self.items: list[str] = []
        self.currentIndex = -1

    @property
    def count(self):
        return len(self.items)

    @property
    def currentText(self):
        return self.items[self.currentIndex] if 0 <= self.currentIndex < len(self.items) else ""

    def clear(self):
        self.items, self.currentIndex = [], -1

    def addItem(self, text):
        self.items.append(text)
        self.currentIndex = max(self.currentIndex, 0)

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def findText(self, text):
        return self.items.index(text) if text in self.items else -1


class _Index:
    def __init__(self, row):
        self._row = row

    def isValid(self):
        return self._row >= 0

    def row(self):
        return self._row


class TableView(Widget):
    """qMRMLTableView: selecting a row emits selectionChanged(), as the real view does."""

    def __init__(self, name, cls):
        super().__init__(name, cls)
        self.tableNode, self._row = None, -1

    def setMRMLTableNode(self, node):
        self.tableNode, self._row = node, -1
        self.emit("selectionChanged()")  # the real view emits it here too

    def currentIndex(self):
        return _Index(self._row)

    def selectRow(self, row):
        self._row = row
        self.emit("selectionChanged()")

    def sortFilterProxyModel(self):
        return types.SimpleNamespace(mapToSource=lambda index: index)


WIDGET_CLASSES = {"QComboBox": ComboBox, "ctkComboBox": ComboBox, "qMRMLTableView": TableView}


def loadUI(path):
    import xml.etree.ElementTree as ET

    root = types.SimpleNamespace(setMRMLScene=lambda scene: None, widgets={})
    for element in ET.parse(path).getroot().iter("widget"):
        cls = element.get("class")
        root.widgets[element.get("name")] = WIDGET_CLASSES.get(cls, Widget)(element.get("name"), cls)
    return root


def childWidgetVariables(root):
    return types.SimpleNamespace(**root.widgets)


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        logging.info(message)


# ------------------------------------------------------------------------ SampleData
class SampleDataLogic:
    sources: dict = {}
    categories: dict = {}

    @classmethod
    def registerCustomSampleDataCategory(cls, category, title=None):
        cls.categories[category] = title

    @classmethod
    def registerCustomSampleDataSource(cls, category="Custom", sampleName=None, uris=None, fileNames=None,
                                       nodeNames=None, checksums=None, loadFileTypes=None,
                                       loadFileProperties=None, thumbnailFileName=None, **kwargs):
        cls.sources[sampleName] = dict(category=category, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
                                       checksums=checksums, loadFileTypes=loadFileTypes,
                                       loadFileProperties=loadFileProperties or {})


@functools.lru_cache(maxsize=None)
def _cached_file(checksum: str) -> Path:
    """The pip-cached test data file whose SHA-256 is ``checksum`` ("SHA256:<hex>")."""
    from TotalFMLib.inputs.sample_data import fetch

    algorithm, digest = checksum.split(":", 1)
    assert algorithm.upper() == "SHA256", checksum
    for name in ("example_ct", "example_seg", "example_ct_sm", "example_seg_sm"):
        path = fetch(name)
        if hashlib.sha256(path.read_bytes()).hexdigest() == digest.lower():
            return path
    raise RuntimeError(f"no cached sample file with {checksum}")


def _sample_file(source) -> Path:
    """A source's file: a ``file://`` URI read as SampleData reads it (checked by SHA-256), else
    (no network in tests) the pip-cached copy with the declared SHA-256."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    uri = source["uris"]
    if uri.startswith("file:"):
        path = Path(url2pathname(urlparse(uri).path))
        digest = source["checksums"].split(":", 1)[1].lower()
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"Checksum verification failed for {uri}")
        return path
    return _cached_file(source["checksums"])


def downloadSample(sampleName):
    source = SampleDataLogic.sources[sampleName]
    path = _sample_file(source)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLApplicationLogic(slicer.app.applicationLogic())
    volumes.SetMRMLScene(slicer.mrmlScene)
    labelmap = 1 if source["loadFileProperties"].get("labelmap") else 0
    return volumes.AddArchetypeVolume(str(path), source["nodeNames"], labelmap)


# --------------------------------------------------------------------- installation
def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def install() -> SceneApp:
    """Put the stand-ins in place (idempotent per call: a fresh scene each time)."""
    env = SceneApp()
    qt = _module("qt")
    qt.__getattr__ = _qt_attribute
    _module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    _module("slicer.parameterNodeWrapper", parameterNodeWrapper=parameterNodeWrapper, Choice=Choice)
    _module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
            ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
    _module("SampleData", SampleDataLogic=SampleDataLogic, downloadSample=downloadSample)
    slicer.mrmlScene = env.scene
    slicer.app = env.app
    slicer.util.loadUI = loadUI
    slicer.util.childWidgetVariables = childWidgetVariables
    slicer.modules = env.modules
    slicer.dicomDatabase = DicomDatabase()
    return env


def import_module_file(name: str = "TotalFMSlicer"):
    """The module file imported as Slicer imports a scripted module: by its path, under its name."""
    if str(MODULE_FILE.parent) not in sys.path:  # Slicer puts each scripted module's folder on the path
        sys.path.insert(0, str(MODULE_FILE.parent))
    spec = importlib.util.spec_from_file_location(name, MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
