"""Vote pairs from a StackExchange data dump (``Posts.xml``), by WorldPM's rule.

The dump (archive.org ``stack-exchange-data-dump``) stores every post as one ``<row .../>`` of ``<posts>``:
questions have ``PostTypeId="1"``, ``Title`` and ``Body``; answers have ``PostTypeId="2"``, ``ParentId`` (the
question's ``Id``), ``Body`` and ``Score`` (net votes, up minus down). Bodies are HTML, escaped in the attribute.

Rule (WorldPM, arXiv 2505.10527, section 2): for each question, sample two answers whose net votes differ; the
higher-voted one is chosen. Ours adds, stated here so they can be changed:

- text: the prompt is ``Title`` + blank line + ``Body`` as plain text; HTML tags are dropped, paragraphs and list
  items keep line breaks (items as ``- ``);
- de-duplication: answers of one question with the same normalised text (case and whitespace folded) keep the first
  by ``Id``; questions with the same normalised title and body keep the first by ``Id``; identical pairs are dropped;
- ``pairs_per_question`` distinct pairs at most per question (default 1), drawn with a per-question seed, so the
  result does not depend on the order of rows;
- split by question: a question goes to the test split when ``sha256(site:question_id:seed)`` mapped to [0, 1) is
  below ``test_fraction``; all pairs of one question are in one split, and the split of a question never changes
  when other questions are added.
"""

from __future__ import annotations

import hashlib
import random
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from qwenkit.reward.data import PreferencePair
from qwenkit.reward.errors import RewardDataError

_BLOCK_TAGS = {"p", "pre", "div", "blockquote", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "tr"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.in_pre = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self.in_pre += tag == "pre"
        if tag == "li":
            self.parts.append("\n- ")
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self.in_pre -= tag == "pre" and self.in_pre > 0
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.in_pre and not data.strip() and "\n" in data:
            return  # line breaks between tags are layout of the HTML source, not of the text
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of a post body: tags dropped, block ends as blank lines, list items as ``- `` lines."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    text = "".join(extractor.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def question_in_test(site: str, question_id: str, seed: int, test_fraction: float) -> bool:
    """Whether a question belongs to the test split (a hash of site, id and seed; order-independent)."""
    digest = hashlib.sha256(f"{site}:{question_id}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


@dataclass
class VotePairs:
    train: list[PreferencePair] = field(default_factory=list)
    test: list[PreferencePair] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class _Answer:
    post_id: int
    score: int
    text: str


def _int_attribute(row: ElementTree.Element, name: str, where: str) -> int:
    value = row.get(name)
    if value is None:
        raise RewardDataError(f"{where}: attribute {name!r} is missing")
    try:
        return int(value)
    except ValueError:
        raise RewardDataError(f"{where}: attribute {name!r} is {value!r}, not an integer") from None


def build_vote_pairs(
    posts_xml: str | Path,
    *,
    site: str | None = None,
    pairs_per_question: int = 1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> VotePairs:
    """Train/test vote pairs from one site's ``Posts.xml`` (see the module docstring for the rule)."""
    path = Path(posts_xml)
    if not path.is_file():
        raise RewardDataError(f"StackExchange dump {str(path)!r} does not exist; pass the site's Posts.xml")
    if pairs_per_question < 1:
        raise RewardDataError(f"pairs_per_question must be at least 1, got {pairs_per_question}")
    if not 0 <= test_fraction < 1:
        raise RewardDataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    site = site or path.parent.name or "site"
    questions: dict[int, tuple[str, str]] = {}
    answers: dict[int, list[_Answer]] = {}
    stats = {"questions": 0, "answers": 0, "duplicate_questions": 0, "duplicate_answers": 0,
             "questions_without_pair": 0, "pairs": 0, "duplicate_pairs": 0}
    try:
        for _, row in ElementTree.iterparse(path, events=("end",)):
            if row.tag != "row":
                continue
            where = f"{path}: row Id={row.get('Id')!r}"
            kind = row.get("PostTypeId")
            if kind == "1":
                post_id = _int_attribute(row, "Id", where)
                title = row.get("Title") or ""
                questions[post_id] = (str(post_id), f"{title}\n\n{html_to_text(row.get('Body') or '')}".strip())
                stats["questions"] += 1
            elif kind == "2":
                body = html_to_text(row.get("Body") or "")
                if body:
                    parent = _int_attribute(row, "ParentId", where)
                    answer = _Answer(_int_attribute(row, "Id", where), _int_attribute(row, "Score", where), body)
                    answers.setdefault(parent, []).append(answer)
                    stats["answers"] += 1
            row.clear()
    except ElementTree.ParseError as exc:
        line, column = exc.position
        raise RewardDataError(f"{path}:{line}: not well-formed XML at column {column} ({exc})") from None

    seen_questions: set[str] = set()
    seen_pairs: set[tuple[str, str, str]] = set()
    result = VotePairs(stats=stats)
    for question_id in sorted(questions):
        qid, prompt = questions[question_id]
        key = _normalised(prompt)
        if key in seen_questions:
            stats["duplicate_questions"] += 1
            continue
        seen_questions.add(key)
        unique: dict[str, _Answer] = {}
        for answer in sorted(answers.get(question_id, []), key=lambda a: a.post_id):
            if _normalised(answer.text) in unique:
                stats["duplicate_answers"] += 1
            else:
                unique[_normalised(answer.text)] = answer
        candidates = [(a, b) for i, a in enumerate(unique.values()) for b in list(unique.values())[i + 1 :]
                      if a.score != b.score]
        if not candidates:
            stats["questions_without_pair"] += 1
            continue
        rng = random.Random(f"{site}:{qid}:{seed}")
        chosen_pairs = rng.sample(candidates, min(pairs_per_question, len(candidates)))
        split = result.test if question_in_test(site, qid, seed, test_fraction) else result.train
        for a, b in chosen_pairs:
            high, low = (a, b) if a.score > b.score else (b, a)
            if (prompt, high.text, low.text) in seen_pairs:
                stats["duplicate_pairs"] += 1
                continue
            seen_pairs.add((prompt, high.text, low.text))
            split.append(PreferencePair(
                prompt=prompt, chosen=high.text, rejected=low.text, category="stackexchange", subset=site,
                source=f"{site}/{qid}/{high.post_id}-{low.post_id}", votes=(high.score, low.score), id=f"{site}-{qid}",
            ))
            stats["pairs"] += 1
    return result
