"""The built-in web client (web/) in a real, headless Chromium against a real Parley server.

Chromium is Debian's (scripts/setup-system.sh installs it), driven by the Python
``playwright`` package (requirements-dev.txt) without downloading a browser. Its
microphone is a fake device reading a WAV of speech made by the project's TTS, so
the whole voice path runs: AudioWorklet capture -> /ws -> VAD/ASR -> agent (fake
LLM) -> TTS -> playback in the page. Screenshots go to artifacts/.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS, fake_mic_flag, write_speech_wav
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.paths import ARTIFACTS
from tests.support.server_process import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (scripts/setup-system.sh)"),
]

SPOKEN = "What is the weather like in Paris today?"
MEMORY_USER = "web-memory"
LONG_REPLY = " ".join(
    f"Sentence number {i} of a long story about a lighthouse keeper and the sea." for i in range(1, 13)
)


def scripted_llm(request: dict[str, Any]) -> Reply:
    """Echo the question, except "story" questions, which get a long reply to interrupt."""
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    last = str(users[-1]["content"]) if users else ""
    if "story" in last.lower():
        return Reply(text=LONG_REPLY, token_interval_s=0.01)
    return Reply(text=f"You said: {last}", token_interval_s=0.005)


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(default=scripted_llm) as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="module")
def memory_ids(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> tuple[Path, dict[str, str]]:
    """A memory folder with two memories of MEMORY_USER, written before the server opens it."""
    from agent.memory import MemoryStore

    memory_dir = tmp_path_factory.mktemp("web-memory")
    with MemoryStore(memory_dir, embedder=embedder) as store:
        ids = {
            "teal": store.add_fact(MEMORY_USER, "My favourite colour is teal."),
            "cat": store.add_fact(MEMORY_USER, "I have a cat called Miso."),
        }
    return memory_dir, ids


@pytest.fixture(scope="module")
def parley(llm: FakeOpenAI, memory_ids: tuple[Path, dict[str, str]]) -> Iterator[ServerProcess]:
    memory_dir, _ = memory_ids
    args = ["--lm_model_url", llm.base_url, "--lm_model_name", "fake-model", "--lm_max_retries", "0",
            "--lm_tool_routing", "off", "--extract_facts", "off", "--memory_dir", str(memory_dir)]
    with ServerProcess(args, env={"LLM_API_KEY": "test", "SERPER_API_KEY": "", "PARLEY_AUTH_TOKEN": ""}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wav = write_speech_wav(tmp_path_factory.mktemp("mic") / "question.wav", SPOKEN)
    with sync_api.sync_playwright() as pw:
        # launch() gives every run a fresh temporary profile (its own --user-data-dir).
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, fake_mic_flag(wav)])
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """One page of the client, with the JavaScript errors it raised."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def state(self, expr: str) -> Any:
        """Evaluate an expression over ``window.parley`` (as ``p``)."""
        return self.page.evaluate(f"(() => {{ const p = window.parley; return {expr}; }})()")

    def wait(self, expr: str, timeout_s: float = 30.0) -> None:
        try:
            self.page.wait_for_function(f"(() => {{ const p = window.parley; return p && ({expr}); }})()",
                                        timeout=timeout_s * 1000)
        except sync_api.TimeoutError:
            snapshot = self.page.evaluate("JSON.stringify(window.parley)")
            raise AssertionError(f"timed out waiting for {expr}; window.parley = {snapshot}") from None

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def open_tab(browser: Any, parley: ServerProcess) -> Iterator[Callable[..., Tab]]:
    contexts: list[Any] = []

    def open_(user_id: str, before: Callable[[Any], None] | None = None) -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        # The page keeps the user id in localStorage; set it before the page's scripts run.
        context.add_init_script(f"localStorage.setItem('parley.userId', {json.dumps(user_id)});")
        tab = Tab(context.new_page())
        tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        if before is not None:
            before(tab.page)
        tab.page.goto(parley.url)
        tab.wait("p.connected", 15)
        return tab

    yield open_
    for context in contexts:
        context.close()


def reply_text(tab: Tab, turn: int = 0) -> str:
    return tab.page.locator(".turn").nth(turn).locator(".reply-text").inner_text()


def test_typed_question_streams_text_route_and_audio(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab("web-typed")
    tab.page.fill("#text-input", "What is the capital of France?")
    tab.page.press("#text-input", "Enter")
    tab.wait("p.turns.length === 1 && p.turns[0].done")
    turn = tab.page.locator(".turn").first
    assert turn.locator(".user-text").inner_text() == "What is the capital of France?"
    assert "You said: What is the capital of France?" in reply_text(tab)
    # One text node per response.text.delta: the reply was drawn token by token, not at the end.
    pieces = tab.page.evaluate("document.querySelector('.turn .reply-text').childNodes.length")
    assert pieces > 3
    route = tab.state("p.lastRoute.route")
    assert route
    assert turn.locator(".route .badge").is_visible()
    assert tab.state("p.turns[0].route") == route
    # Reply audio arrived and actually played out through the output AudioContext.
    tab.wait("p.audioFramesPlayed > 5 && !p.playing", 30)
    assert tab.state("p.audioFramesReceived") >= tab.state("p.audioFramesPlayed") > 5
    assert tab.state("p.samplesPlayed") > 0.3 * tab.state("p.outputSampleRate")
    stages = turn.locator(".metric").evaluate_all("rows => rows.map(r => r.dataset.stage)")
    assert "llm_ttft" in stages
    assert turn.locator(".metrics").get_attribute("open") is not None
    tab.screenshot("web-typed.png")
    assert not tab.errors


def test_spoken_question_through_the_microphone(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab("web-voice")
    tab.page.click("#mic")
    tab.wait("p.micOn", 10)
    tab.wait("p.turns.length >= 1 && p.turns[0].done", 60)
    assert tab.state("p.micFramesSent") > 50
    transcript = tab.state("p.turns[0].transcript").lower()
    assert re.search(r"weather|paris", transcript), transcript
    shown = tab.page.locator(".turn .user-text").first.inner_text()
    assert shown.lower() == transcript
    assert "You said:" in reply_text(tab)
    assert tab.page.locator(".turn .route .badge").first.is_visible()
    metrics = tab.state("p.turns[0].metrics")
    assert {"asr", "vad_end"} <= set(metrics), metrics
    stages = tab.page.locator(".turn").first.locator(".metric").evaluate_all("rows => rows.map(r => r.dataset.stage)")
    assert "asr" in stages
    tab.wait("p.audioFramesPlayed > 5 && !p.playing", 30)
    tab.screenshot("web-voice.png")
    assert not tab.errors


def test_stop_button_silences_and_interrupts_the_reply(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab("web-stop")
    tab.page.fill("#text-input", "Tell me a long story about a lighthouse.")
    tab.page.click("#send")
    tab.wait("p.playing && p.audioFramesPlayed > 3", 30)
    tab.page.click("#stop")
    assert tab.state("p.playing") is False  # silenced at once, before the server answers
    tab.wait("p.turns[0].interrupted === true", 10)
    scheduled = tab.state("p.samplesScheduled")
    tab.page.wait_for_timeout(800)
    assert tab.state("p.samplesScheduled") == scheduled, "frames of the cut reply must not play"
    assert tab.page.locator(".turn.interrupted .tag").inner_text() == "interrupted"
    assert tab.state("p.audioFramesReceived") < 250  # the whole story is ~40 s of audio, ~1000 frames
    assert not tab.errors


def test_memory_panel_lists_searches_and_deletes(open_tab: Callable[..., Tab], parley: ServerProcess,
                                                 memory_ids: tuple[Path, dict[str, str]]) -> None:
    _, ids = memory_ids
    tab = open_tab(MEMORY_USER)
    items = tab.page.locator("#memory-list .memory-item")
    items.first.wait_for(timeout=10000)
    texts = items.all_inner_texts()
    assert any("teal" in t for t in texts)
    assert any("Miso" in t for t in texts)

    tab.page.fill("#memory-q", "cat")
    tab.page.click("#memory-search button")
    tab.page.wait_for_function("document.getElementById('memory-status').textContent.includes('matching')")
    assert "Miso" in items.first.inner_text()

    cat = tab.page.locator(f'#memory-list .memory-item[data-memory-id="{ids["cat"]}"]')
    cat.get_by_role("button", name="Delete").click()
    cat.wait_for(state="detached", timeout=10000)
    with urllib.request.urlopen(f"{parley.url}api/memory?user_id={MEMORY_USER}", timeout=10) as res:
        left = [item["id"] for item in json.load(res)["items"]]
    assert ids["cat"] not in left
    assert ids["teal"] in left

    tab.page.fill("#memory-q", "")
    tab.page.click("#memory-refresh")
    tab.page.wait_for_function("document.querySelectorAll('#memory-list .memory-item').length === 1")
    assert "teal" in items.first.inner_text()
    assert "1 stored" in tab.page.locator("#memory-status").inner_text()
    tab.screenshot("web-memory.png")
    assert not tab.errors


def test_socket_drop_is_shown_and_reconnects(open_tab: Callable[..., Tab]) -> None:
    sockets: list[Any] = []

    def relay(ws: Any) -> None:  # pass everything through, but keep a handle to cut the line
        ws.connect_to_server()
        sockets.append(ws)

    tab = open_tab("web-reconnect", before=lambda page: page.route_web_socket(re.compile(r"/ws$"), relay))
    sockets[0].close(code=1011, reason="test drop")
    tab.wait("p.connection === 'retrying'", 5)
    banner = tab.page.locator("#banner")
    assert banner.is_visible()
    assert "Reconnecting" in banner.inner_text()
    tab.wait("p.connected", 15)
    assert len(sockets) == 2
    assert banner.is_hidden()
    # The new session works.
    tab.page.fill("#text-input", "Are you back?")
    tab.page.press("#text-input", "Enter")
    tab.wait("p.turns.length === 1 && p.turns[0].done")
    assert not tab.errors


def test_microphone_denied_is_explained(open_tab: Callable[..., Tab]) -> None:
    deny = """navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"""
    tab = open_tab("web-denied", before=lambda page: page.add_init_script(deny))
    tab.page.click("#mic")
    tab.wait("p.micError === 'NotAllowedError'", 5)
    assert "denied" in tab.page.locator("#banner").inner_text()
    assert tab.page.locator("#mic-label").inner_text() == "Start microphone"
    assert not tab.errors
