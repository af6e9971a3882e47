"""Report -> organ sentence pairs: splitting, organ lexicon, negation/uncertainty, LLM client."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from TotalFMLib.errors import InputError, ModelError
from TotalFMLib.training import reports
from TotalFMLib.training.llm_splitter import LLMSentenceSplitter
from TotalFMLib.training.report_organs import assign_organs, organ_lexicon
from TotalFMLib.training.report_text import split_sentences
from TotalFMLib.training.reports import classify, report_to_pairs

REPORT = """CT ABDOMEN AND PELVIS WITHOUT CONTRAST

FINDINGS:
LIVER: Normal in size. There is a 2.3 cm hypodense lesion in segment 7, suspicious for metastasis.
No intrahepatic biliary dilatation.
GALLBLADDER: Multiple gallstones without wall thickening.
SPLEEN: Unremarkable.
PANCREAS: No focal mass or ductal dilatation.
KIDNEYS: 4 mm nonobstructing stone in the lower pole of the left kidney. The right kidney is
unremarkable. No hydronephrosis.
Lung bases: Small right pleural effusion. Cannot exclude a small left effusion.
Vessels: Atherosclerotic calcification of the abdominal aorta without aneurysm.

IMPRESSION:
1. Hypodense hepatic lesion, likely metastasis.
2. Cholelithiasis.
3. Dr. Smith was notified at approx. 3 p.m.
"""


def test_split_sentences_keeps_decimals_and_abbreviations():
    sents = split_sentences(REPORT)
    assert "There is a 2.3 cm hypodense lesion in segment 7, suspicious for metastasis." in sents
    assert "Dr. Smith was notified at approx. 3 p.m." in sents
    assert "Cholelithiasis." in sents  # list mark "2." removed
    assert not any(s.lower().startswith(("findings", "impression")) for s in sents)
    assert split_sentences("Cysts, stones etc. The spleen is normal.") == ["Cysts, stones etc.", "The spleen is normal."]
    assert split_sentences("") == []
    with pytest.raises(InputError):
        split_sentences(None)  # type: ignore[arg-type]


def test_lexicon_comes_from_catalogue_and_synonyms():
    lex = organ_lexicon()
    assert lex["left kidney"] == ("kidney_left",)          # catalogue display name
    assert set(lex["kidney"]) == {"kidney_left", "kidney_right"}  # SNOMED meaning, both sides
    assert lex["hepatic"] == ("liver",)
    assert set(lex["renal"]) == {"kidney_left", "kidney_right"}
    assert lex["splenic"] == ("spleen",)
    assert lex["cholecystic"] == ("gallbladder",)
    assert len(lex["pulmonary"]) == 5


@pytest.mark.parametrize("sentence, organs", [
    ("2 cm hypodense hepatic lesion.", ["liver"]),
    ("Left renal calculus measuring 5 mm.", ["kidney_left"]),
    ("Bilateral renal cysts.", ["kidney_left", "kidney_right"]),
    ("The kidneys are unremarkable.", ["kidney_left", "kidney_right"]),
    ("Small right pleural effusion.", ["lung_lower_lobe_right"]),
    ("Nodule in the left lower lobe.", ["lung_lower_lobe_left"]),
    ("The right adrenal gland and the left kidney are normal.", ["adrenal_gland_right", "kidney_left"]),
    ("Splenic vein is patent.", ["portal_vein_and_splenic_vein"]),     # not "spleen"
    ("No adrenal nodule.", ["adrenal_gland_left", "adrenal_gland_right"]),  # "adrenal" is not "renal"
    ("Hepatosplenomegaly.", ["liver", "spleen"]),
    ("Wall thickening of the urinary bladder.", ["urinary_bladder"]),
    ("Calcified plaque of the aortic wall.", ["aorta"]),
    ("Compression deformity of the L1 vertebral body.", ["vertebrae_L1"]),
    ("No pulmonary embolism.", []),
    ("Dr. Smith was notified.", []),
])
def test_assign_organs(sentence, organs):
    assert assign_organs(sentence) == organs


@pytest.mark.parametrize("sentence, organs", [
    # a side given anywhere in the sentence holds for the other mentions of the same organs
    ("Simple renal cyst in the superior pole of the left kidney.", ["kidney_left"]),
    ("Multiple pulmonary nodules, largest in the right lung base measuring 8 mm.", ["lung_lower_lobe_right"]),
    ("Renal calculus at the lower pole of the right kidney, 4 mm.", ["kidney_right"]),
    ("Subcentimeter pulmonary nodule in the left upper lobe, unchanged.", ["lung_upper_lobe_left"]),
    # ... but not for other organs, and not against a word for both sides
    ("Small cyst in the left hepatic lobe and bilateral renal cysts.", ["liver", "kidney_left", "kidney_right"]),
    ("Left hepatic lobe lesion and renal cysts.", ["liver", "kidney_left", "kidney_right"]),
    ("Renal cysts in both kidneys, the largest in the left kidney.", ["kidney_left", "kidney_right"]),
    ("Cyst in the left kidney and stone in the right renal pelvis.", ["kidney_left", "kidney_right"]),
    ("Pulmonary nodules in both lungs, the largest in the right lower lobe.",
     ["lung_lower_lobe_left", "lung_lower_lobe_right", "lung_middle_lobe_right", "lung_upper_lobe_left",
      "lung_upper_lobe_right"]),
    ("Hepatosplenomegaly with a splenic cyst.", ["liver", "spleen"]),  # two organs, not one in more detail
])
def test_a_sentence_that_names_one_side_goes_to_that_side_only(sentence, organs):
    assert assign_organs(sentence) == organs


@pytest.mark.parametrize("sentence, label", [
    # hedged but positive: the finding is reported, only its nature is hedged
    ("Hypodense lesions in the liver, likely small cysts.", "abnormal"),
    ("Several hypodense renal lesions, probably simple cysts.", "abnormal"),
    ("2 cm enhancing mass in the pancreatic tail, concerning for malignancy.", "abnormal"),
    ("Small pleural effusion, possibly reactive.", "abnormal"),
    # hedged findings themselves stay uncertain
    ("Possible small gallstone.", "uncertain"),
    ("Cannot exclude a subtle hypodense lesion in segment 4.", "uncertain"),
    ("Questionable mild splenomegaly.", "uncertain"),
    # measurements and plain descriptions alone are not abnormal
    ("Main pulmonary artery diameter is 2.5 cm.", "normal"),
    ("The spleen measures 11 cm in craniocaudal length.", "normal"),
    ("The liver spans 16 cm.", "normal"),
    ("Abdominal aorta measures 2.1 cm in maximal diameter.", "normal"),
])
def test_hedges_and_measurements(sentence, label):
    assert classify(sentence) == label


def test_header_supplies_organ_and_sentence_side_narrows_it():
    assert assign_organs("Unremarkable.", header="SPLEEN") == ["spleen"]
    assert assign_organs("Cannot exclude a small left effusion.", header="Lung bases") == ["lung_lower_lobe_left"]


@pytest.mark.parametrize("sentence, label", [
    ("There is a 2.3 cm hypodense lesion in the liver.", "abnormal"),
    ("No focal liver lesion.", "normal"),
    ("The spleen is unremarkable.", "normal"),
    ("The spleen is not enlarged.", "normal"),
    ("Kidneys without hydronephrosis or stones.", "normal"),
    ("Negative for pleural effusion.", "normal"),
    ("The peritoneal cavity is free of fluid.", "normal"),
    ("The liver is normal in size with a 3 cm hypodense lesion.", "abnormal"),
    ("No ascites, but a small left pleural effusion is present.", "abnormal"),
    ("Hepatomegaly, otherwise unremarkable.", "abnormal"),
    ("No change in the 1.2 cm renal cyst.", "abnormal"),
    ("Gallstones are not seen.", "normal"),
    ("Cannot exclude a small renal stone.", "uncertain"),
    ("Possible hypodense lesion in the pancreas.", "uncertain"),
    ("Findings likely represent hepatic steatosis.", "uncertain"),
    ("Lesion suspicious for malignancy.", "abnormal"),   # the lesion is certain; its nature is hedged
    ("Hypodensity may represent a cyst.", "abnormal"),
    ("No findings suspicious for malignancy.", "normal"),
    ("Multiple gallstones without wall thickening.", "abnormal"),
    ("Atherosclerotic calcification of the aorta without aneurysm.", "abnormal"),
    ("Status post cholecystectomy.", "abnormal"),
])
def test_classify(sentence, label):
    assert classify(sentence) == label


def test_classify_rejects_empty():
    with pytest.raises(InputError):
        classify("  ")


def test_report_to_pairs_on_a_realistic_report():
    present = ["liver", "spleen", "gallbladder", "kidney_left", "kidney_right", "stomach",
               "lung_lower_lobe_left", "lung_lower_lobe_right", "aorta"]
    pairs = report_to_pairs("case7", REPORT, organs=present, fill_normal=True)
    by = {}
    for p in pairs:
        assert p.case_id == "case7" and p.organ in present and p.label in reports.LABELS
        by.setdefault(p.organ, []).append((p.label, p.sentence))
    labels = {o: {lab for lab, _ in v} for o, v in by.items()}
    # "2.3 cm hypodense lesion ..., suspicious for metastasis": the lesion is reported, its nature hedged
    assert labels["liver"] == {"abnormal", "normal"}
    assert labels["gallbladder"] == {"abnormal"}
    assert labels["spleen"] == {"normal"}
    assert ("abnormal", "4 mm nonobstructing stone in the lower pole of the left kidney.") in by["kidney_left"]
    assert "abnormal" not in labels["kidney_right"]
    assert labels["lung_lower_lobe_right"] == {"abnormal"}
    assert labels["lung_lower_lobe_left"] == {"uncertain"}
    assert labels["aorta"] == {"abnormal"}
    assert by["stomach"] == [("normal", "Stomach is unremarkable.")]  # generated: no sentence named it
    assert "pancreas" not in by  # not in the organ list
    strict = report_to_pairs("case7", REPORT, organs=present, keep_uncertain=False)
    assert all(p.label != "uncertain" for p in strict)


# ----------------------------------------------------------------- LLM client, real HTTP

class _Server:
    """A real HTTP server on 127.0.0.1 answering like an OpenAI-compatible endpoint."""

    def __init__(self, status=200, content=None, raw=None):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
                if raw is not None:
                    body = raw.encode()
                else:
                    body = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_llm_splitter_against_local_openai_style_server():
    reply = "```json\n" + json.dumps({
        "Liver": ["2 cm hypodense lesion in segment 7."],
        "kidneys": "No hydronephrosis.",
        "left kidney": ["Small stone."],
        "not an organ": ["ignored"],
    }) + "\n```"
    with _Server(content=reply) as srv:
        splitter = LLMSentenceSplitter(srv.url, "local-model", api_key="secret")
        pairs = report_to_pairs("c1", "whatever the report says", splitter=splitter)
        path, headers, body = srv.received[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer secret"
    assert body["model"] == "local-model" and body["messages"][1]["content"] == "whatever the report says"
    assert "kidney_left" in body["messages"][0]["content"]
    got = {(p.organ, p.sentence, p.label) for p in pairs}
    assert ("liver", "2 cm hypodense lesion in segment 7.", "abnormal") in got
    assert ("kidney_right", "No hydronephrosis.", "normal") in got
    assert ("kidney_left", "Small stone.", "abnormal") in got
    assert all(p.sentence != "ignored" for p in pairs)


def test_llm_splitter_errors_are_clear():
    with _Server(status=500, raw='{"error": "model not loaded"}') as srv:
        with pytest.raises(ModelError, match=r"HTTP 500.*model not loaded"):
            LLMSentenceSplitter(srv.url + "/v1", "m").split("text")
    with _Server(content="I cannot do that.") as srv:
        with pytest.raises(ModelError, match="not a JSON object"):
            LLMSentenceSplitter(srv.url, "m").split("text")
    with _Server(raw="<html>") as srv:
        with pytest.raises(ModelError, match="not JSON"):
            LLMSentenceSplitter(srv.url + "/v1/chat/completions", "m").split("text")
    with _Server() as srv:
        port_url = srv.url
    with pytest.raises(ModelError, match="cannot connect"):
        LLMSentenceSplitter(port_url, "m", timeout=5).split("text")  # server is closed now
    with pytest.raises(InputError):
        LLMSentenceSplitter("localhost:8000", "m")
