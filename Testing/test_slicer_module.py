"""The Slicer module file itself, imported as Slicer imports it and run on real slicer-core MRML
(the Qt application is stood in: ``slicer_app_standin.py`` says what and why): its parameter
node against the rules of Slicer's parameterNodeWrapper, its own ``TotalFMSlicerTest``
unchanged, and the Logic's whole path with both kinds of segmentation input, cancel, and a
scene closed while a job runs."""
from __future__ import annotations

import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Union

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core wheel (pip install slicer-core) not installed")
pytest.importorskip("vtk")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parameter_node_rules as rules  # noqa: E402
import slicer_app_standin as standin  # noqa: E402

UI_FILE = standin.MODULE_FILE.parent / "Resources" / "UI" / "TotalFMSlicer.ui"


@pytest.fixture()
def env(home):
    """A fresh application scene, the stand-ins in place, and the module file imported."""
    app = standin.install()
    module = standin.import_module_file()
    module.TotalFMSlicer(types.SimpleNamespace())  # the module object, as Slicer makes it at startup
    yield types.SimpleNamespace(app=app, module=module, scene=slicer.mrmlScene)
    app.close()


def ui_bindings() -> dict[str, str]:
    """{parameter name: widget class} for every widget the .ui binds with SlicerParameterName."""
    found = {}
    for widget in ET.parse(UI_FILE).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                found[prop.find("string").text] = widget.get("class")
    return found


# ------------------------------------------------------------------ parameter node
def test_parameter_node_follows_slicers_rules_and_wraps_a_node(env):
    cls = env.module.TotalFMSlicerParameterNode
    assert rules.parameter_node_problems(cls.wrapped_class) == []
    assert rules.gui_binding_problems(cls.wrapped_class, ui_bindings()) == []
    p = env.module.TotalFMSlicerLogic().getParameterNode()
    assert p.inputVolume is None and p.inputSegmentation is None and p.checkpointPath == ""
    assert p.modelSource == "demo" and p.fastSegmentation is True
    label = env.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    p.inputSegmentation = label
    assert p.inputSegmentation.GetID() == label.GetID()
    p.inputSegmentation = None  # "run TotalSegmentator" must be a value the field can hold
    assert p.inputSegmentation is None


def test_rules_refuse_a_union_of_nodes_without_none_and_a_dot_path():
    class Bad:
        seg: Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode]
        path: Path = Path()

    problems = rules.parameter_node_problems(Bad)
    assert any("seg: a Union of node types must include None" in p for p in problems)
    assert any("path: the default Path()" in p for p in problems)
    wrapper = standin.parameterNodeWrapper(Bad)
    with pytest.raises(TypeError, match="must include None"):
        wrapper(slicer.vtkMRMLScriptedModuleNode())

    class Good:
        seg: Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode, None]

    assert rules.parameter_node_problems(Good) == []
    assert rules.gui_binding_problems(Good, {"seg": "QCheckBox"}) == ["seg: QCheckBox cannot show a field of "
                                                                        f"type {[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode]!r}"]


# ------------------------------------------------------------------- the self-test
def test_the_modules_own_self_test_passes_unchanged(env):
    test = env.module.TotalFMSlicerTest()
    test.runTest()
    assert env.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") >= 1


# ----------------------------------------------------------------------- the Logic
def load_example(env):
    env.module.registerSampleData()
    import SampleData

    return SampleData.downloadSample("TotalFMExampleCT"), SampleData.downloadSample("TotalFMExampleSegmentation")


def test_logic_scores_a_segmentation_node_input_in_place(env):
    from TotalFMSlicerLib import geometry, score_store, segments

    ct, label = load_example(env)
    seg = segments.segmentation_from_labelmap(env.scene, geometry.volume_from_volume_node(label), ct, "organs")
    logic = env.module.TotalFMSlicerLogic()
    before = env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    segmentation, table, legend = logic.process(ct, seg, "demo", cpu=True)
    assert segmentation.GetID() == seg.GetID()  # scored in place: no second segmentation
    assert env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before
    rows = score_store.scored_rows(segmentation)
    assert table.GetNumberOfRows() == len({r.organ for r in rows}) > 5
    hits = logic.search(segmentation, "enlarged liver", table, topK=3, threshold=float("-inf"))
    assert sum(h.matched for h in hits) == 3
    assert logic.tableOrgans(table)[:3] == [h.organ for h in sorted(hits, key=lambda h: h.rank)][:3]


def test_scene_closed_during_a_job_shows_nothing_on_removed_nodes(env):
    ct, label = load_example(env)
    logic = env.module.TotalFMSlicerLogic()
    run = logic.startAnalysis(ct, label, "demo", cpu=True)
    env.scene.Clear(0)
    run.job.wait()
    assert logic.finishAnalysis(run) is None
    assert env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert env.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0


def test_the_worker_reads_no_mrml_node(env):
    """Every MRML read of the CT and segmentation nodes happens on the main thread (VTK objects are
    not thread-safe): each node's readers are wrapped to record the thread that calls them."""
    import threading

    ct, label = load_example(env)
    off_main = []
    for node in (ct, label):
        for name in ("GetName", "GetID", "GetImageData", "GetIJKToRASMatrix", "GetScene"):
            original = getattr(node, name)

            def reader(*args, _original=original, _name=name, _node=node):
                if threading.current_thread() is not threading.main_thread():
                    off_main.append(f"{_node.GetClassName()}.{_name}")
                return _original(*args)

            setattr(node, name, reader)
    logic = env.module.TotalFMSlicerLogic()
    run = logic.startAnalysis(ct, label, "demo", cpu=True)
    run.job.wait()
    assert run.job.error is None and off_main == []
    assert {r.case_id for r in run.job.result.rows} == {"TotalFMExampleCT"}


def test_a_saved_and_reopened_scene_searches_again_without_apply(env, tmp_path):
    """Scores and embeddings are stored with the segmentation: save the scene as a Slicer data
    bundle, close it, reopen it with a new Logic (nothing in memory), and search."""
    import glob

    from TotalFMSlicerLib import score_store

    ct, label = load_example(env)
    logic = env.module.TotalFMSlicerLogic()
    segmentation, table, _legend = logic.process(ct, label, "demo", cpu=True)
    before = {h.organ: h.score for h in logic.search(segmentation, "liver lesion")}
    rows_before = score_store.scored_rows(segmentation)
    assert env.app.app.logic.SaveSceneToSlicerDataBundleDirectory(str(tmp_path), None)
    env.scene.Clear(0)
    env.scene.SetURL(glob.glob(str(tmp_path / "*.mrml"))[0])
    assert env.scene.Import()
    reopened = next(n for n in [env.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                                for i in range(env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
                    if n.GetName() == segmentation.GetName())
    assert score_store.scored_rows(reopened) == rows_before
    fresh = env.module.TotalFMSlicerLogic()
    after = {h.organ: h.score for h in fresh.search(reopened, "liver lesion")}
    assert after.keys() == before.keys()
    assert max(abs(after[o] - before[o]) for o in before) < 1e-5


def test_search_refuses_embeddings_of_a_model_it_cannot_load(env):
    import json

    from TotalFMLib.errors import InputError
    from TotalFMSlicerLib import score_store

    ct, label = load_example(env)
    logic = env.module.TotalFMSlicerLogic()
    segmentation, _table, _legend = logic.process(ct, label, "demo", cpu=True)
    stored = json.loads(segmentation.GetAttribute(score_store.ATTRIBUTE_MODEL))
    segmentation.SetAttribute(score_store.ATTRIBUTE_MODEL, json.dumps({**stored, "checksum": "0" * 64}))
    with pytest.raises(InputError, match="scored with totalfm-demo .*choose that model and press Apply"):
        env.module.TotalFMSlicerLogic().search(segmentation, "liver lesion")
    empty = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(InputError, match="press Apply first"):
        logic.search(empty, "liver lesion")


# ----------------------------------------------------------------------- the Widget
@pytest.fixture()
def widget(env, monkeypatch):
    """The module's Widget built on the stood-in .ui widgets, the real Logic and scene; the
    PyTorch and TotalSegmentator extensions' installs (Slicer modules) are not run here."""
    w = env.module.TotalFMSlicerWidget()
    w.setup()
    monkeypatch.setattr(w.logic, "ensureDependencies", lambda *args, **kwargs: None)
    yield w
    w.cleanup()


def poll_until_done(w, seconds: float = 600) -> list:
    """Call the Widget's timer slot until the run is over; the errors it raised (as Qt would print)."""
    import time

    errors, t0 = [], time.monotonic()
    while w._run is not None and time.monotonic() - t0 < seconds:
        try:
            w.onPoll()
        except Exception as e:  # noqa: BLE001 - a slot's exception, shown by tryWithErrorDisplay
            errors.append(e)
        time.sleep(0.05)
    assert w._run is None, "the run did not finish"
    return errors


def choose_inputs(env, w):
    ct, label = load_example(env)
    p = w._parameterNode
    p.inputVolume, p.inputSegmentation = ct, label
    return ct, label


def test_opening_the_module_makes_a_parameter_node_and_enables_apply(env, widget):
    widget.enter()
    assert widget._parameterNode is not None and widget.ui.applyButton.text == "Apply"
    assert widget.ui.applyButton.enabled is False  # no CT yet
    choose_inputs(env, widget)
    widget.updateButtons()
    assert widget.ui.applyButton.enabled is True and widget.ui.fastCheckBox.enabled is False


def test_a_failed_job_gives_apply_back(env, widget, tmp_path):
    choose_inputs(env, widget)
    junk = tmp_path / "not_a_model.pt"
    junk.write_bytes(b"this is not a TotalFM checkpoint")
    widget._parameterNode.modelSource = "checkpoint"
    widget._parameterNode.checkpointPath = str(junk)
    widget.ui.applyButton.emit("clicked(bool)", False)
    assert widget.ui.applyButton.text == "Cancel"
    errors = poll_until_done(widget)
    assert errors and "not_a_model.pt" in str(errors[0])
    assert widget.ui.applyButton.text == "Apply" and widget.ui.applyButton.enabled is True


def test_the_widget_runs_scores_searches_and_reviews(env, widget):
    choose_inputs(env, widget)
    widget.ui.applyButton.emit("clicked(bool)", False)
    assert poll_until_done(widget) == []
    p = widget._parameterNode
    assert p.resultSegmentation is not None and p.scoresTable is not None
    assert widget.ui.findingComboBox.currentText == "any lesion" and "Score" not in widget.ui.legendLabel.text
    assert widget.ui.exportButton.enabled is True
    widget.ui.searchLineEdit.text = "enlarged liver"
    widget.ui.searchLineEdit.emit("returnPressed()")
    assert any(line.startswith("'enlarged liver':") for line in widget.ui.logTextEdit.lines)
    widget.ui.nextButton.emit("clicked()")
    first = widget.currentOrgan()
    assert first and widget.ui.currentOrganLabel.text == first
    widget.ui.agreeButton.emit("clicked()")
    from TotalFMSlicerLib import scores_table

    assert scores_table.review_marks(p.scoresTable) == {first: "agree"}
    assert widget.currentOrgan() != first  # the mark moves on to the next organ


def test_closing_the_scene_during_a_run_leaves_nothing_behind(env, widget):
    choose_inputs(env, widget)
    widget.ui.applyButton.emit("clicked(bool)", False)
    env.scene.Clear(0)  # the Widget observes the scene: it cancels and lets go of the parameter node
    assert poll_until_done(widget) == []
    assert env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert widget.ui.applyButton.text == "Apply"


def test_handlers_do_nothing_without_a_parameter_node_or_results(env, widget):
    widget.setParameterNode(None)
    for handler in (lambda: widget.onFindingChosen(0), widget.onRestoreColors, lambda: widget.stepOrgan(1),
                    widget.onTableSelection, widget.onExport, widget.onSearch, widget.onApplyButton):
        handler()
    widget.enter()  # a parameter node, but nothing scored yet
    for handler in (lambda: widget.onFindingChosen(0), widget.onRestoreColors, lambda: widget.stepOrgan(1),
                    widget.onTableSelection, widget.onExport, widget.onSearch):
        handler()


class TotalSegmentatorLogicStandIn:
    """Stands in for SlicerTotalSegmentator's Logic (a Slicer module; its inference cannot run
    here). As the real one: ``process`` starts a child process and ``logProcessOutput`` forwards
    each line it prints to ``logCallback``, raising CalledProcessError when it ends badly; here
    the process prints a line every 50 ms for ``lines`` lines, then the node is filled with the
    example's TotalSegmentator segmentation (or ``fail`` makes the process exit with 1)."""

    def __init__(self, label, fail: bool = False, lines: int = 5):
        self.label, self.fail, self.lines = label, fail, lines
        self.own_log = []
        self.logCallback = self.own_log.append  # the TotalSegmentator widget's own log box
        self.processes = []

    def logProcessOutput(self, proc):
        import subprocess

        for line in proc.stdout:
            self.logCallback(line.rstrip())
        proc.wait()
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)

    def process(self, ctNode, segmentationNode, fast, cpu, task, interactive=False):
        import subprocess

        self.logCallback(f"TotalSegmentator: task {task}, fast {fast}")
        script = (f"import sys, time\nfor i in range({self.lines}):\n    print('step', i, flush=True)\n"
                  f"    time.sleep(0.05)\nsys.exit({int(self.fail)})")
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        self.processes.append(proc)
        self.logProcessOutput(proc)
        from TotalFMSlicerLib import geometry, segments

        scene = segmentationNode.GetScene()
        made = segments.segmentation_from_labelmap(scene, geometry.volume_from_volume_node(self.label), ctNode, "tmp")
        segmentationNode.GetSegmentation().DeepCopy(made.GetSegmentation())
        scene.RemoveNode(made)


@pytest.mark.parametrize("fail", [False, True])
def test_segmenting_gives_totalsegmentator_its_log_back_and_keeps_the_gui_painting(env, monkeypatch, fail):
    from TotalFMSlicerLib import logic as logic_module

    ct, label = load_example(env)
    ts = TotalSegmentatorLogicStandIn(label, fail)
    own = ts.logCallback
    monkeypatch.setattr(logic_module, "totalSegmentatorLogic", lambda: ts)
    logic = env.module.TotalFMSlicerLogic()
    seen = []
    logic.logCallback = seen.append
    painted = env.app.app.events_processed
    before = env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    if fail:
        import subprocess

        with pytest.raises(subprocess.CalledProcessError):
            logic.segment(ct)
        assert env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before  # nothing half-made
    else:
        node = logic.segment(ct)
        assert node.GetSegmentation().GetNumberOfSegments() > 5
        assert env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before + 1
    assert ts.logCallback is own  # TotalSegmentator's own log box is not silenced for good
    assert "logProcessOutput" not in vars(ts)  # its own method again
    assert any("TotalSegmentator: task total" in line for line in seen) and "step 4" in seen
    assert env.app.app.events_processed > painted


def test_cancel_during_segmentation_kills_totalsegmentator_and_leaves_the_scene(env, widget, monkeypatch):
    """Apply without a segmentation: TotalSegmentator runs in the foreground and Apply reads
    Cancel; a click on it (delivered while the GUI paints) stops TotalSegmentator's process,
    and no node is left behind."""
    from TotalFMSlicerLib import logic as logic_module

    ct, label = load_example(env)
    ts = TotalSegmentatorLogicStandIn(label, lines=400)  # 20 s unless stopped
    monkeypatch.setattr(logic_module, "totalSegmentatorLogic", lambda: ts)
    p = widget._parameterNode
    p.inputVolume = ct
    p.inputSegmentation = None
    before = env.scene.GetNumberOfNodes()
    labels_seen = []

    def click_cancel():
        labels_seen.append(widget.ui.applyButton.text)
        widget.ui.applyButton.emit("clicked(bool)", False)

    env.app.app.pending.append(click_cancel)
    widget.ui.applyButton.emit("clicked(bool)", False)
    assert labels_seen == ["Cancel"]
    (proc,) = ts.processes
    assert proc.poll() is not None and proc.returncode != 0  # killed, not finished
    assert widget._run is None and widget.ui.applyButton.text == "Apply" and widget.ui.applyButton.enabled
    assert widget.ui.logTextEdit.lines[-1] == "Cancelled: the scene is as it was."
    assert env.scene.GetNumberOfNodes() == before and ts.logCallback == ts.own_log.append


# ------------------------------------------------------------------ DICOM export
def load_dicom_example(env, dicom_base, folder):
    """The example series (UIDs filled in) as a CT node "loaded from DICOM" (the attribute Slicer's
    DICOM plugins set, the files in the database) and its label map node."""
    import pydicom

    from dicom_study import complete_series
    from TotalFMLib.inputs.ct import load_ct
    from TotalFMLib.inputs.segmentation import load_segmentation
    from TotalFMSlicerLib import geometry

    files = complete_series(dicom_base[0], folder)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    slicer.dicomDatabase.files.update(zip(uids, map(str, files)))
    ct = load_ct(folder)
    ct_node = geometry.volume_node_from_volume(env.scene, ct, "2: CT Body 3.0")
    ct_node.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
    labels = geometry.volume_node_from_volume(env.scene, load_segmentation(dicom_base[1], ct), "organs",
                                              "vtkMRMLLabelMapVolumeNode")
    return ct_node, labels


def test_the_widget_exports_dicom_seg_and_sr_with_the_review_marks(env, widget, dicom_base, tmp_path, monkeypatch):
    import subprocess

    import highdicom as hd

    from orthanc_server import require

    ct, labels = load_dicom_example(env, dicom_base, tmp_path / "series")
    p = widget._parameterNode
    p.inputVolume, p.inputSegmentation = ct, labels
    widget.ui.applyButton.emit("clicked(bool)", False)
    assert poll_until_done(widget) == []
    assert widget.ui.exportDicomButton.enabled is True
    widget.ui.nextButton.emit("clicked()")
    first = widget.currentOrgan()
    widget.ui.disagreeButton.emit("clicked()")
    out = tmp_path / "dicom_out"
    monkeypatch.setattr(sys.modules["qt"], "QFileDialog",
                        types.SimpleNamespace(getExistingDirectory=lambda *args: str(out)), raising=False)
    widget.ui.exportDicomButton.emit("clicked(bool)", False)
    assert {f.name for f in out.iterdir()} == {"organs_seg.dcm", "findings_sr.dcm"}
    assert widget.ui.logTextEdit.lines[-1].startswith("Wrote ")
    for f in out.iterdir():
        report = subprocess.run([require("dciodvfy"), str(f)], capture_output=True, text=True, timeout=120)
        assert not [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    sr = hd.sr.srread(out / "findings_sr.dcm")
    marks = {g.tracking_identifier: e.value.value for g in sr.content.get_volumetric_roi_measurement_groups()
             for e in g.get_qualitative_evaluations() if e.name.value == "review"}
    from TotalFMLib.vocabulary import catalogue

    assert marks == {catalogue.organ(first).display_name: "disagree"}
    assert sr.StudyInstanceUID == slicer_study_uid(ct)


def slicer_study_uid(ct_node) -> str:
    import pydicom

    first = ct_node.GetAttribute("DICOM.instanceUIDs").split()[0]
    return str(pydicom.dcmread(slicer.dicomDatabase.fileForInstance(first), stop_before_pixels=True).StudyInstanceUID)


def test_dicom_export_of_a_ct_not_loaded_from_dicom_is_refused_in_one_line(env, tmp_path):
    from TotalFMLib.errors import InputError

    ct, label = load_example(env)
    logic = env.module.TotalFMSlicerLogic()
    segmentation, table, _ = logic.process(ct, label, "demo", cpu=True)
    with pytest.raises(InputError, match="was not loaded from Slicer's DICOM database") as e:
        logic.exportDicom(ct, segmentation, table, tmp_path / "out")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_the_sample_data_ships_with_the_module_and_loads_offline(env):
    """The self-test's example CT and segmentation come from the module's own Resources (no
    network on an extension build machine), checked by the SHA-256 the source declares."""
    import hashlib
    from urllib.parse import urlparse

    env.module.registerSampleData()
    import SampleData

    resources = standin.MODULE_FILE.parent / "Resources" / "SampleData"
    for name in ("TotalFMExampleCT", "TotalFMExampleSegmentation"):
        source = SampleData.SampleDataLogic.sources[name]
        path = Path(urlparse(source["uris"]).path)
        assert source["uris"].startswith("file:") and path.parent == resources.resolve()
        assert "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest() == source["checksums"]
        assert SampleData.downloadSample(name) is not None


# ------------------------------------------------------------------ case library panel
def test_the_library_panel_finds_across_studies_and_opens_a_hit_with_its_organ_highlighted(env, widget, sample,
                                                                                          tmp_path):
    import shutil

    from TotalFMLib.cli import main
    from TotalFMSlicerLib import colouring, segments

    root = tmp_path / "studies"
    root.mkdir()
    for name, ct, seg in (("abdomen", "example_ct", "example_seg"), ("upper", "example_ct_sm", "example_seg_sm")):
        shutil.copy(sample(ct), root / f"{name}.nii.gz")
        shutil.copy(sample(seg), root / f"{name}_seg.nii.gz")
    assert main(["index", str(root), "--library", str(tmp_path / "lib"), "-q"]) == 0
    before = env.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    widget.ui.libraryPathLineEdit.currentPath = str(tmp_path / "lib")
    widget.ui.libraryQueryLineEdit.text = "enlarged liver"
    widget.ui.libraryFindButton.emit("clicked(bool)", False)
    hits = widget.ui.libraryTableView.tableNode
    assert hits is not None and hits.GetNumberOfRows() == 20
    studies = {hits.GetTable().GetValueByName(r, "study").ToString() for r in range(hits.GetNumberOfRows())}
    assert studies == {"abdomen.nii.gz", "upper.nii.gz"}
    widget.ui.libraryTableView.selectRow(0)
    organ = hits.GetTable().GetValueByName(0, "organ").ToString()
    widget.ui.libraryOpenButton.emit("clicked(bool)", False)
    assert widget.ui.logTextEdit.lines[-1].startswith("opened ")
    assert env.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before + 1
    segmentation = env.scene.GetNthNodeByClass(env.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") - 1,
                                               "vtkMRMLSegmentationNode")
    display = segmentation.GetDisplayNode()
    for name, sid in segments.organ_segments(segmentation).items():
        colour = segmentation.GetSegmentation().GetSegment(sid).GetColor()
        if name == organ:
            assert colour == pytest.approx(colouring.HIGHLIGHT_COLOR) and display.GetSegmentOpacity3D(sid) == 1.0
        else:
            assert display.GetSegmentOpacity3D(sid) < 1.0


def test_the_library_panel_says_what_is_wrong_in_one_line(env, widget, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, *a, **k: shown.append(text), raising=False)
    widget.ui.libraryPathLineEdit.currentPath = str(tmp_path / "nothing")
    widget.ui.libraryQueryLineEdit.text = "kidney stone"
    try:
        widget.ui.libraryFindButton.emit("clicked(bool)", False)
    except Exception as e:  # noqa: BLE001 - tryWithErrorDisplay shows, then re-raises
        shown.append(str(e))
    assert any("is no case library" in text for text in shown)
