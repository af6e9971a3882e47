"""TotalFM review in the browser (``totalfm serve``): 3D Slicer's core in a trame-slicer page.

It lives on the Slicer side of the house: it imports slicer-core, VTK and trame, and runs the
reviewer's workflow through ``TotalFMSlicerLib.workflow.CaseWorkflow``, the code the Slicer
module's Logic runs, on the same MRML layer.

- ``serve``: the command line, settings, one session's server;
- ``launcher``: several readers at once, one review process each, behind one address;
- ``app``: one session: trame-slicer's scene and views, the page's triggers, uploads, access;
- ``page``: the page's widgets;
- ``review``: the reader's case and review on the shared workflow, long steps on jobs;
- ``uploads``, ``case_files``: uploads into the session's private folder and what they become;
- ``access``: loopback by default, an access token beyond it.
"""
