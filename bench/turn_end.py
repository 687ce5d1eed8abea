"""Turn-end rule on real speech: which pause lengths each ending gets, premature ends, and the wait at the end.

For every utterance of bench/voice_utterances.py (short questions, long sentences with
0.5-1.1 s pauses, two-fragment utterances with one 0.5-1.1 s pause; English and
Mandarin), the real VAD and Whisper run as the server runs them: at each pause of
``speculative_silence_ms`` the utterance so far is decoded (after the text committed at
earlier pauses), and the turn-end rule (speech/voice/turn_end.py) gives that pause its
end-of-turn silence. A pause inside the utterance that lasts at least that long would
end the turn there: a premature turn end (its reply would play to a speaker who only
paused). At the true end, the silence is what the user waits on top of the decode.

Timing-free: the same transcripts are scored under every candidate setting, so the
figures do not depend on the machine's load (only the decodes do).

    flock /tmp/parley-bench.lock .venv/bin/python -m bench.turn_end [--quick] [--smart] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from agent.language import HAN_RANGES
from bench.common import emit, load_average, machine, print_table

HAN = re.compile(f"[{HAN_RANGES}]")

CANDIDATES = {  # name -> (early, unclear = min_silence, doubtful, late, pause margin, habit at most, prior) ms
    "words only (doubtful 800, no pause habit)": (450, 800, 800, 1600, -1, 1600, 0),
    "doubtful 1,300, no pause habit": (450, 800, 1300, 1600, -1, 1600, 0),
    "doubtful 1,300, habit +200": (450, 800, 1300, 1600, 200, 1600, 0),
    "doubtful 1,300, habit +300": (450, 800, 1300, 1600, 300, 1600, 0),
    "doubtful 1,300, habit +400": (450, 800, 1300, 1600, 400, 1600, 0),
    "doubtful 1,300, habit +400 up to 1,300": (450, 800, 1300, 1600, 400, 1300, 0),
    "doubtful 1,300, habit +400 up to 1,300, new speaker 800 (default)": (450, 800, 1300, 1600, 400, 1300, 800),
    "doubtful 1,300, habit +400 up to 1,200, new speaker 800": (450, 800, 1300, 1600, 400, 1200, 800),
    "full stop 1,200, no habit": (450, 1200, 1300, 1600, -1, 1600, 0),
}


def pauses_of(engines, utt) -> list[dict[str, object]]:
    """Each pause of ``utt`` as the server sees it: silence the VAD counts, transcript so far, model score."""
    from speech.engines.vad import SpeechPause, SpeechResume, SpeechStart
    from speech.voice.utterance import SpokenSoFar, recognize

    stream = engines.new_vad_stream()
    stream.args = replace(stream.args, min_silence_ms=10_000)  # see every pause to its end
    stream.reset()
    pcm = np.concatenate([np.zeros(4800, np.int16), utt.pcm, np.zeros(40000, np.int16)])
    so_far, out = SpokenSoFar(), []
    events = stream.process(pcm)
    for i, event in enumerate(events):
        if isinstance(event, SpeechStart):
            so_far.restart()
        if not isinstance(event, SpeechPause):
            continue
        resume = next((e for e in events[i + 1:] if isinstance(e, SpeechResume)), None)
        cut = so_far.cut if so_far.cut < event.audio.size else 0
        heard = recognize(engines.asr, event.audio, cut, so_far.text if cut else "",
                          engines.language_hint or (so_far.language if cut else None), engines.turn_model)
        final = resume is None
        out.append({"text": heard.text, "final": final, "prob": heard.complete_prob,
                    "silence_ms": None if final else resume.t_ms - event.speech_end_ms})
        if not final:
            so_far.commit(so_far.utterance, event.audio.size, heard.text, heard.language)
    stream.close()
    return out


def score(utterances: list[tuple[str, list[dict[str, object]]]], base_args, smart: bool) -> list[dict[str, object]]:
    """Premature ends and end waits per setting, the utterances taken in order as one session."""
    from speech.voice.turn_end import PauseHistory, end_silence_ms

    rows = []
    for name, (early, unclear, doubt, late, margin, habit_max, prior) in CANDIDATES.items():
        args = replace(base_args, early_silence_ms=early, late_silence_ms=late, doubt_silence_ms=doubt,
                       pause_margin_ms=margin, pause_habit_max_ms=habit_max, pause_habit_prior_ms=prior)
        history = PauseHistory(prior_ms=args.pause_habit_prior_ms)
        outcome = []  # (set, premature, end wait)
        for kind, pauses in utterances:
            history.new_utterance()
            premature, end_wait = False, None
            for p in pauses:
                prob = p["prob"] if smart else None
                wait = end_silence_ms(str(p["text"]), unclear, args, prob, history.longest_ms)  # type: ignore[arg-type]
                if p["final"]:
                    end_wait = wait
                else:
                    premature = premature or float(p["silence_ms"]) >= wait  # type: ignore[arg-type]
                    history.went_on_after(float(p["silence_ms"]))  # type: ignore[arg-type]
            outcome.append((kind, premature, end_wait))
        for kind in ("all", "short", "long", "paused"):
            sel = [o for o in outcome if kind in ("all", o[0])]
            waits = [o[2] for o in sel if o[2] is not None]
            rows.append({"setting": name + (" + smart-turn" if smart else ""), "set": kind, "utterances": len(sel),
                         "premature": f"{sum(o[1] for o in sel)}/{len(sel)}",
                         "end_wait_p50_ms": float(np.median(waits)) if waits else None,
                         "end_wait_max_ms": max(waits) if waits else None})
    return rows


Heard = list[tuple[str, list[dict[str, object]]]]


def alone(heard: Heard, language: str | None) -> Heard:
    """The utterances of one language only (None: all), by the script of their final transcript."""
    if language is None:
        return heard
    return [(k, ps) for k, ps in heard if bool(HAN.search(str(ps[-1]["text"]))) == (language == "zh")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="The voice bench's quick sets.")
    parser.add_argument("--smart", action="store_true", help="Load smart-turn v3.2 and let it vote (--turn_end smart).")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pauses", help="Score the pauses of an earlier --json run (no decoding).")
    parser.add_argument("--alone", choices=("zh", "en"),
                        help="Score one language's utterances alone, as one speaker's session (no pause habit "
                             "carried in from the other language's long sentences).")
    args = parser.parse_args()
    if args.pauses:
        old = json.loads(Path(args.pauses).read_text())
        saved = [(p["set"], p) for p in old["pauses"]]
        heard: list[tuple[str, list[dict[str, object]]]] = []
        for kind, p in saved:  # regroup: an utterance's pauses end with its final one
            if not heard or heard[-1][1][-1]["final"]:
                heard.append((kind, []))
            heard[-1][1].append(p)
        if args.quick:  # the voice bench's quick sets, in its order
            limits = {"short": 5, "long": 3, "paused": 3}
            heard = [h for i, h in enumerate(heard) if [k for k, _ in heard[: i + 1]].count(h[0]) <= limits[h[0]]]
        from speech.engines.factory import EngineSettings

        heard = alone(heard, args.alone)
        rows = score(heard, EngineSettings(), False) + (score(heard, EngineSettings(), True) if old["smart"] else [])
        print_table("Premature turn ends and the end-of-turn wait, per setting", rows)  # type: ignore[arg-type]
        return
    from bench.voice_utterances import make_utterances
    from speech.engines.factory import add_speech_arguments, build_engines

    speech = argparse.ArgumentParser()
    add_speech_arguments(speech)
    engines = build_engines(speech.parse_args(["--turn_end", "smart"] if args.smart else []))
    engines.warm_up()
    sets = make_utterances(engines.tts, engines.tts.sample_rate, args.quick)
    heard = alone([(kind, pauses_of(engines, u)) for kind, utts in sets.items() for u in utts], args.alone)
    rows = score(heard, engines.args, False) + (score(heard, engines.args, True) if args.smart else [])
    result: dict[str, object] = {"machine": machine(), "smart": args.smart, "rows": rows,
                                 "pauses": [{"set": k, **p} for k, ps in heard for p in ps],
                                 "load_average_after": load_average()}
    if not args.json:
        for k, ps in heard:
            for p in ps:
                where = "end  " if p["final"] else "pause"
                print(f"{k:7} {where} {p['silence_ms'] or 0:>7.0f} ms  prob={p['prob']}  {p['text']}")
        print_table("Premature turn ends and the end-of-turn wait, per setting", result["rows"])  # type: ignore[arg-type]
        print("load before", result["machine"]["load_average"], "after", result["load_average_after"])  # type: ignore[index]
    emit(result, args.json)


if __name__ == "__main__":
    main()
