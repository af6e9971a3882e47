"""The page: a side panel with the reviewer's steps (case, model, finding, search, organs,
export) beside trame-slicer's four views. Widgets only; every action is a trigger handled in
``app.py``. Element ids are what the browser tests and readers' scripts address."""
from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v

WINDOW_LABELS = (("lung", "Lung"), ("soft_tissue", "Soft tissue"), ("bone", "Bone"))  # crops.ct_windows
# keys for reading without the mouse (not while typing in a field)
KEYS = """window.addEventListener('keydown', (e) => {
  if (['INPUT', 'TEXTAREA', 'SELECT'].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
  const actions = {n: ['step', [1]], ArrowDown: ['step', [1]], p: ['step', [-1]], ArrowUp: ['step', [-1]],
                   a: ['mark', ['agree']], d: ['mark', ['disagree']], u: ['mark', ['unsure']]};
  const action = actions[e.key];
  if (action && window.trame.state.get('scored')) { e.preventDefault(); window.trame.trigger(...action); }
});"""
MARKS = (("agree", "mdi-check", "success"), ("disagree", "mdi-close", "error"), ("unsure", "mdi-help", "warning"))
DEFAULTS = {"model_choice": "demo", "checkpoint_path": "", "query_input": "", "dim_below": True,
            "consent_open": False, "local_paths": False, "ct_path": "", "seg_path": "", "uploaded_ct": "",
            "uploaded_seg": "", "consent_text": ""}

_UPLOAD = ("utils.totalfm.upload('{kind}', $event.target).then((r) => {{ {target} = r.text; "
           "if (!r.ok) {{ error = r.text; }} }})")


def _upload_input(kind: str, label: str, target: str, accept: str = "", multiple: bool = True) -> None:
    html.Div(label, classes="text-caption mt-2")
    html.Input(type="file", id=f"upload-{kind}", multiple=multiple, accept=accept or None,
               change=_UPLOAD.format(kind=kind, target=target), classes="text-body-2")
    html.Div(f"{{{{ {target} }}}}", id=f"uploaded-{kind}", classes="text-caption text-medium-emphasis")


def build(server, layout_manager, title: str = "TotalFM review"):
    state = server.state
    for name, value in DEFAULTS.items():
        state.setdefault(name, value)
    with VAppLayout(server, full_height=True) as layout:
        client.Script(KEYS)
        client.Style("html { overflow-y: hidden; } .organ-row { cursor: pointer; } "
                     ".organ-row.current { background: rgba(255,140,0,0.25); } "
                     ".matched td:first-child { font-weight: bold; color: #ff8c00; }")
        with v.VAppBar(density="compact"):
            v.VAppBarTitle(title)
            html.Div("{{ case_name }}", id="case-name", classes="text-subtitle-1 mr-4")
            html.Div("Research software, not for clinical decisions", classes="text-caption mr-4")
        with v.VNavigationDrawer(width=420, permanent=True):
            with v.VContainer(classes="pa-3"):
                _case_panel()
                _model_panel()
                _display_panel()
                _organ_panel()
        with v.VMain():
            with v.VContainer(fluid=True, classes="fill-height pa-0 ma-0"):
                layout_manager.initialize_layout_grid(layout)
        _consent_dialog()
    return layout


def _case_panel() -> None:
    html.Div("Case", classes="text-h6")
    v.VBtn("Open the example case", id="open-example", click="trigger('open_example')", disabled=("busy",),
           block=True, variant="tonal", classes="my-1")
    _upload_input("ct", "CT: a NIfTI/NRRD file, or every file of a DICOM series", "uploaded_ct")
    _upload_input("seg", "Segmentation (optional): label map, .seg.nrrd, or the organ mask files",
                  "uploaded_seg")
    v.VBtn("Open the uploaded case", id="open-uploads", click="trigger('open_uploads')",
           disabled=("busy || !uploaded_ct",), block=True, variant="tonal", classes="my-1")
    with html.Div(v_if="local_paths"):
        v.VTextField(v_model=("ct_path",), label="CT path on this machine", id="ct-path", density="compact",
                     hide_details=True, classes="mt-2")
        v.VTextField(v_model=("seg_path",), label="segmentation path (optional)", id="seg-path",
                     density="compact", hide_details=True, classes="mt-1")
        v.VBtn("Open the paths", id="open-paths", click="trigger('open_paths')", disabled=("busy || !ct_path",),
               block=True, variant="tonal", classes="my-1")
    _upload_input("review", "Reopen a saved review (.mrb)", "uploaded_review", accept=".mrb", multiple=False)
    v.VDivider(classes="my-2")


def _model_panel() -> None:
    with v.VRow(dense=True, classes="align-center"):
        with v.VCol(cols=6):
            v.VSelect(v_model=("model_choice",), items=("['demo', 'official', 'checkpoint']",), label="Model",
                      id="model-choice", density="compact", hide_details=True)
        with v.VCol(cols=3):
            v.VBtn("Score", id="score", color="primary", click="trigger('score')",
                   disabled=("busy || !case_name",), block=True)
        with v.VCol(cols=3):
            v.VBtn("Cancel", id="cancel", click="trigger('cancel')", disabled=("!busy",), block=True)
    v.VTextField(v_if="model_choice === 'checkpoint'", v_model=("checkpoint_path",),
                 label="checkpoint file (.pt) on the server", density="compact", hide_details=True)
    v.VProgressLinear(model_value=("progress", 0), active=("busy",), height=6, classes="mt-2", id="progress")
    html.Div("{{ status }}", id="status", classes="text-body-2 mt-1")
    v.VAlert(v_if="error", text=("error",), type="error", density="compact", id="error", classes="mt-1",
             closable=True, click_close="error = ''")
    v.VDivider(classes="my-2")


def _display_panel() -> None:
    with v.VBtnToggle(v_if="case_name", model_value=("ct_window",), mandatory=True, density="compact",
                      divided=True, variant="outlined", classes="mb-2", id="ct-window"):
        for name, label in WINDOW_LABELS:
            v.VBtn(label, value=name, id=f"window-{name}", size="small", click=f"trigger('window', ['{name}'])")
    with html.Div(v_if="scored"):
        with v.VRow(dense=True, classes="align-center"):
            with v.VCol(cols=8):
                v.VSelect(v_model=("finding",), items=("findings",), label="Colour organs by", id="finding",
                          density="compact", hide_details=True,
                          update_modelValue="trigger('show_finding', [$event])")
            with v.VCol(cols=4):
                v.VBtn("Original colours", id="restore", click="trigger('restore')", size="small", block=True)
        v.VCheckbox(v_model=("dim_below",), label="faint below threshold", id="dim-below", density="compact",
                    hide_details=True, update_modelValue="trigger('show_finding', [finding])")
        with html.Div(id="legend", classes="d-flex align-center my-1"):
            html.Span("0", v_if="legend_colors.length", classes="mr-1 text-caption")
            html.Span(v_for="c in legend_colors", style=("{background: c, width: '18px', height: '12px', "
                                                         "display: 'inline-block'}",))
            html.Span("1", v_if="legend_colors.length", classes="ml-1 text-caption")
            html.Span("{{ legend_title }}", classes="ml-2 text-caption", id="legend-title")
        v.VTextField(v_model=("query_input",), label="Find organs: type a finding", id="search",
                     prepend_inner_icon="mdi-magnify", density="compact", hide_details=True, clearable=True,
                     classes="mt-2")
        v.VSlider(v_model=("match_score",), min=0, max=6, step=0.1, label="match score", id="match-score",
                  density="compact", hide_details=True, thumb_label=True, classes="mt-1",
                  end="trigger('find', [query_input || '', $event])")
        html.Div("matches: {{ matched.length ? matched.join(', ') : 'none' }}", v_if="query", id="matches",
                 classes="text-caption")
        v.VDivider(classes="my-2")


def _organ_panel() -> None:
    with html.Div(v_if="scored"):
        with v.VRow(dense=True):
            v.VBtn("Previous", id="previous", click="trigger('step', [-1])", size="small", classes="ma-1",
                   title="p or the up arrow")
            v.VBtn("Next", id="next", click="trigger('step', [1])", size="small", classes="ma-1",
                   title="n or the down arrow")
            for mark, icon, colour in MARKS:
                v.VBtn(mark, id=f"mark-{mark}", prepend_icon=icon, color=colour, size="small", classes="ma-1",
                       title=f"key {mark[0]}",
                       variant="tonal", disabled=("!current_organ",), click=f"trigger('mark', ['{mark}'])")
        with html.Div(style="max-height: 34vh; overflow-y: auto;", classes="mt-1"):
            with v.VTable(density="compact", id="organ-table"):
                with html.Thead():
                    with html.Tr():
                        for head in ("organ", "score", "flag", "review"):
                            html.Th(head)
                with html.Tbody():
                    with html.Tr(v_for="row in rows", key="row.organ", click="trigger('select', [row.organ])",
                                 classes=("['organ-row', {current: row.organ === current_organ, "
                                          "matched: row.matched}]",)):
                        html.Td("{{ row.label }}")
                        html.Td("{{ row.score === null ? '' : row.score.toFixed(3) }}")
                        html.Td("{{ row.flagged ? '*' : '' }}")
                        html.Td("{{ row.mark }}")
        with v.VRow(dense=True, classes="mt-2"):
            v.VBtn("Export CSV", id="export-csv", prepend_icon="mdi-download", size="small", classes="ma-1",
                   click="utils.download(case_name + '_scores.csv', trigger('export_csv'), 'text/csv')")
            v.VBtn("Save review", id="save-review", prepend_icon="mdi-content-save", size="small", classes="ma-1",
                   click="utils.download(case_name + '_review.mrb', trigger('save_review'), "
                         "'application/octet-stream')")


def _consent_dialog() -> None:
    with v.VDialog(v_model=("consent_open",), max_width=520):
        with v.VCard(title="Released TotalFM weights"):
            v.VCardText("{{ consent_text }}")
            with v.VCardActions():
                v.VSpacer()
                v.VBtn("Cancel", click="consent_open = false")
                v.VBtn("Download and score", id="consent-yes", color="primary",
                       click="consent_open = false; trigger('score', [true])")
