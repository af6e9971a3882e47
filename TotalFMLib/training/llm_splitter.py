"""The optional LLM step of the report parser: split a report and assign its sentences to
organs with an OpenAI-compatible chat endpoint (off unless passed to
``reports.report_to_pairs``); labels still come from ``reports.classify``."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Iterable

from ..errors import InputError, ModelError
from ..vocabulary import catalogue
from .report_organs import assign_organs

LLM_PROMPT = (
    "You split CT radiology reports into organ-level statements. Organs must be chosen "
    "from this list of TotalSegmentator structure names: {organs}. For every organ the "
    "report mentions, copy the report's sentences (or sentence fragments) about that organ, "
    "keeping negations such as 'no' or 'without'. Answer with one JSON object only, "
    "mapping organ name to a list of sentences, for example "
    '{{"liver": ["2 cm hypodense lesion in segment 7."], "kidney_left": ["No stones."]}}.'
)


class LLMSentenceSplitter:
    """Report -> {organ: [sentences]} through an OpenAI-compatible ``/v1/chat/completions``.

    ``endpoint_url`` may be the server root ("http://host:8000"), its "/v1" or the full
    chat-completions URL. Only the standard library is used (urllib). Organ keys of the
    answer are matched to catalogue names (groups such as "kidneys" expand); unknown
    keys are dropped. Any transport or format problem raises :class:`ModelError` naming
    the endpoint.
    """

    def __init__(self, endpoint_url: str, model: str, api_key: str | None = None,
                 timeout: float = 60.0, organs: Iterable[str] | None = None):
        url = endpoint_url.rstrip("/")
        if not re.match(r"^https?://", url):
            raise InputError(endpoint_url, "the LLM endpoint must be an http(s) URL")
        if not url.endswith("/chat/completions"):
            url = url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")
        self.url = url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.organs = [o.name for o in catalogue.resolve(list(organs) if organs else None)]

    def _request(self, report: str) -> dict:
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": LLM_PROMPT.format(organs=", ".join(self.organs))},
                {"role": "user", "content": report},
            ],
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", errors="replace")[:200].strip()
            raise ModelError(f"LLM endpoint {self.url}: HTTP {e.code} {e.reason}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ModelError(f"LLM endpoint {self.url}: cannot connect ({reason})") from None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ModelError(f"LLM endpoint {self.url}: answer is not JSON: {raw[:120]!r}") from None

    def split(self, report: str) -> dict[str, list[str]]:
        """{structure name: [sentences]} for one report."""
        answer = self._request(report)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"LLM endpoint {self.url}: no choices[0].message.content in the answer") from None
        text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", str(content))
        try:
            table = json.loads(text)
        except json.JSONDecodeError:
            raise ModelError(f"LLM endpoint {self.url}: the model's reply is not a JSON object: "
                             f"{text[:120]!r}") from None
        if not isinstance(table, dict):
            raise ModelError(f"LLM endpoint {self.url}: the model's reply is JSON but not an object")
        result: dict[str, list[str]] = {}
        for key, sentences in table.items():
            if isinstance(sentences, str):
                sentences = [sentences]
            if not isinstance(sentences, list):
                continue
            try:
                names = [o.name for o in catalogue.resolve([str(key)])]
            except InputError:
                names = assign_organs(str(key).replace("_", " "))
            for name in names:
                if name in self.organs:
                    result.setdefault(name, []).extend(str(s).strip() for s in sentences if str(s).strip())
        return result
