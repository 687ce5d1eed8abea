"""Seeded generator of long multi-session histories with labelled memory questions (English and Chinese).

Each user talks to Parley in ~40 sessions over about six months (~450 turns). Into
the chit-chat go the turns that matter: a pet adopted (and a friend's pet of the same
kind, as a trap), five people introduced once by relation and later mentioned by name
only, a job / home / exercise club that each change once, preferences stated once,
and 30 dated events (who, where), some recalled later without the details. Questions
ask for them in other words:

- ``single-hop``: one turn answers (pet's name, an allergy, who came along to an event);
- ``multi-hop``: two turns from different sessions ("what has my sister started
  learning?" needs "my sister Anna..." and "Anna has started pottery");
- ``update``: the current and the previous value of a fact that changed;
- ``temporal``: "what did I do in the week after I went hiking?", "yesterday", "last
  week" (asked at a given ``now``).

Every question lists the keys of its evidence turns. Users are split in two: even
users are for tuning, odd users are held out. Same seed, same data.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.memory_long_templates import TEMPLATES

SEED = 17
SESSIONS = 40
EVENTS = 30
DAY = 86400.0


def _base(act: str, lang: str) -> str:
    """The event phrase inside a question (Chinese drops the final 了: 去爬山了 -> 去爬山)."""
    return act[:-1] if lang == "zh" and act.endswith("了") else act


def _reply(t: dict[str, Any], rng: random.Random) -> str:
    return rng.choice(t["replies"])


def _turn_text(user: str, reply: str) -> str:
    # The shape memory_writer stores: the user's words, then the start of Parley's reply.
    return f"{user}\n(Parley: {reply})"


def generate_user(lang: str, index: int, seed: int = SEED) -> dict[str, Any]:
    """One user's sessions and questions."""
    t = TEMPLATES[lang]
    rng = random.Random(f"{seed}/{lang}/{index}")
    uid = f"{lang}-user{index}"
    people = rng.sample(t["people"], 12)
    rels = rng.sample(t["relations"], 5)
    persons = dict(zip(rels, people[:5], strict=True))  # relation -> name
    species = rng.choice(t["species"])
    pet, friend_pet = rng.sample(t["pet_names"], 2)
    friend = people[5]
    teacher = people[6]

    # Session dates: every 2 to 7 days from a start in early 2026, evenings.
    day = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=rng.randint(0, 20))
    starts: list[float] = []
    for _ in range(SESSIONS):
        starts.append((day + timedelta(hours=18, minutes=rng.randint(0, 180))).timestamp())
        day += timedelta(days=rng.randint(2, 7))
    slots: list[list[tuple[str, str, str]]] = [[] for _ in range(SESSIONS)]  # (key, category, user text)

    def put(session: int, key: str, text: str) -> str:
        slots[session].append((key, "evidence", text))
        return key

    qs: list[dict[str, Any]] = []
    end_now = starts[-1] + DAY

    def ask(question: str, evidence: list[str], category: str, now: float = end_now) -> None:
        qs.append({"user": uid, "question": question, "evidence": evidence, "category": category, "now": now})

    third = SESSIONS // 3
    k = put(rng.randrange(0, third), "pet", t["pet_stated"].format(species=species, pet=pet))
    ask(rng.choice(t["pet_q"]).format(species=species), [k], "single-hop")
    k = put(rng.randrange(0, SESSIONS), "friend_pet",
            t["friend_pet_stated"].format(name=friend, species=species, pet=friend_pet))
    ask(t["friend_pet_q"].format(name=friend, species=species), [k], "single-hop")
    skills = rng.sample(t["skills"], len(persons))
    for i, (rel, name) in enumerate(persons.items()):
        a = rng.randrange(0, SESSIONS - 6)
        b = rng.randrange(a + 3, SESSIONS)
        ka = put(a, f"person{i}", t["person_stated"].format(rel=rel, name=name))
        kb = put(b, f"person{i}_skill", t["person_skill"].format(name=name, skill=skills[i]))
        ask(t["person_q"].format(rel=rel), [ka], "single-hop")
        ask(t["person_skill_q"].format(rel=rel), [ka, kb], "multi-hop")
    for fact, pool in (("job", "companies"), ("home", "cities"), ("sport", "sports")):
        old, new = rng.sample(t[pool], 2)
        a, b = rng.randrange(0, SESSIONS // 2 - 2), rng.randrange(SESSIONS // 2, SESSIONS - 1)
        ka = put(a, f"{fact}_old", rng.choice(t[f"{fact}_stated"]).format(value=old))
        kb = put(b, f"{fact}_new", rng.choice(t[f"{fact}_stated"]).format(value=new))
        ask(t[f"{fact}_now_q"], [kb], "update")
        ask(t[f"{fact}_before_q"], [ka], "update")
    values = {
        "allergy": rng.choice(t["allergies"]), "dish": rng.choice(t["dishes"]),
        "instrument": rng.choice(t["instruments"]), "name2": teacher, "band": rng.choice(t["bands"]),
        "car": rng.choice(t["cars"]),
    }
    for i, (stated, question) in enumerate(t["prefs"]):
        k = put(rng.randrange(0, SESSIONS), f"pref{i}", stated.format(**values))
        ask(question.format(**values), [k], "single-hop")

    # Events: one per chosen session, so no two on the same day.
    ev_sessions = sorted(rng.sample(range(SESSIONS), EVENTS))
    acts = rng.sample(t["activities"], EVENTS)
    companions = people[:5] + people[7:]
    events: list[tuple[float, str, str]] = []  # (time, key, act)
    for j, (s, act) in enumerate(zip(ev_sessions, acts, strict=True)):
        who, place = rng.choice(companions), rng.choice(t["places"])
        key = put(s, f"event{j}", t["event"].format(act=act, place=place, who=who))
        events.append((starts[s], key, act))
        q = t["event_q"] if j % 2 == 0 else t["event_where_q"]
        ask(q.format(act=_base(act, lang)), [key], "single-hop")
        if rng.random() < 0.4 and s + 1 < SESSIONS:  # recalled later, without who or where
            slots[rng.randrange(s + 1, SESSIONS)].append(
                (f"echo{j}", "filler", t["event_echo"].format(act=_base(act, lang))))
    week_after = []
    for i, (when, _key, act) in enumerate(events):
        after = [k for w, k, _ in events[i + 1:] if 0 < w - when <= 7 * DAY]
        if 1 <= len(after) <= 2:
            week_after.append((t["week_after_q"].format(act=_base(act, lang)), after))
    for question, after in rng.sample(week_after, min(8, len(week_after))):
        ask(question, after, "temporal")
    for when, key, _act in rng.sample(events, 6):
        d0 = datetime.fromtimestamp(when, UTC).replace(hour=21, minute=0)
        ask(t["yesterday_q"], [key], "temporal", now=(d0 + timedelta(days=1)).timestamp())
    for when, _key, _act in rng.sample(events, 6):
        d = datetime.fromtimestamp(when, UTC)
        monday = (d - timedelta(days=d.weekday())).replace(hour=0, minute=0, second=0)
        ev = [k for w, k, _ in events if monday.timestamp() <= w < (monday + timedelta(days=7)).timestamp()]
        ask(t["last_week_q"], ev, "temporal", now=(monday + timedelta(days=9, hours=12)).timestamp())

    # Fill every session to 9-14 turns with chit-chat on the same topics and names.
    sessions = []
    for s in range(SESSIONS):
        turns = list(slots[s])
        for f in range(rng.randint(9, 14) - len(turns)):
            text = rng.choice(t["fillers"]).format(
                species=species, place=rng.choice(t["places"]), name=rng.choice(people),
                skill=rng.choice(t["skills"]), city=rng.choice(t["cities"]), rel2=rng.choice(rels))
            turns.append((f"s{s}_f{f}", "filler", text))
        rng.shuffle(turns)
        sessions.append({
            "id": f"{uid}-s{s}",
            "start": starts[s],
            "turns": [{"key": f"{uid}/{key}", "text": _turn_text(text, _reply(t, rng))} for key, _c, text in turns],
        })
    for q in qs:
        q["evidence"] = [f"{uid}/{k}" for k in q["evidence"]]
    return {"user_id": uid, "split": "tune" if index % 2 == 0 else "test", "sessions": sessions, "questions": qs}


def generate(lang: str, users: int = 8, seed: int = SEED) -> list[dict[str, Any]]:
    """``users`` users of one language (half tuning, half held out)."""
    return [generate_user(lang, i, seed) for i in range(users)]
