"""Importing the library changes nothing in the process; entry points set the runtime once."""
from __future__ import annotations

import json
import subprocess
import sys


def test_importing_every_module_leaves_the_process_as_it_was():
    """No environment variable, thread setting or heavy package at import: every module of
    TotalFMLib (training included) imported in a fresh interpreter."""
    code = """
import importlib, json, os, pkgutil, sys
before = dict(os.environ)
import TotalFMLib
light = [m for m in ("torch", "transformers", "sentence_transformers", "totalsegmentator") if m in sys.modules]
names = [m.name for m in pkgutil.walk_packages(TotalFMLib.__path__, "TotalFMLib.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
import torch
print(json.dumps({"light": light, "modules": len(names), "changed": sorted(k for k in set(before) | set(os.environ)
                  if before.get(k) != os.environ.get(k)), "threads": torch.get_num_threads()}))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["light"] == []  # import TotalFMLib loads no heavy package
    assert report["modules"] > 50
    assert report["changed"] == [], report["changed"]


def test_setup_sets_the_wait_policy_only_before_torch_and_the_threads(torch_threads):
    code = """
import json, os
from TotalFMLib import runtime
state = runtime.setup(threads=1, quiet=True)
import torch
print(json.dumps({"state": state, "policy": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads()}))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["policy"] == "PASSIVE" and report["threads"] == 1
    assert report["state"] == {"omp_wait_policy": "PASSIVE", "threads": 1}

    from TotalFMLib import runtime  # here torch is loaded already: the policy is left alone, and says so
    assert runtime.setup(threads=1)["omp_wait_policy"] == "(torch imported before setup)"
