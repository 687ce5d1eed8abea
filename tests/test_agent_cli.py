"""The text chat CLI, run as a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from agent.language import HAN
from agent.memory import MemoryStore
from tests.support.paths import ROOT


def run_chat(args: list[str], env_extra: dict[str, str] | None = None, stdin: str | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLM_API_KEY", "SERPER_API_KEY", "SERPER_URL")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "agent.chat", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_once_prints_answer_and_saves_memory(tmp_path, fake_llm, embedder):
    memory_dir = tmp_path / "mem"
    proc = run_chat(["--user", "cli-user", "--once", "my cat is called Tom", "--memory_dir", str(memory_dir),
                     "--lm_model_url", fake_llm.base_url, "--extract_facts", "off"],
                    env_extra={"LLM_API_KEY": "secret-llm-key-123"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "You said: my cat is called Tom"
    assert "[route: direct" in proc.stderr
    assert "secret-llm-key-123" not in proc.stdout + proc.stderr
    assert fake_llm.auth_headers[-1] == "Bearer secret-llm-key-123"
    store = MemoryStore(str(memory_dir), embedder=embedder)
    assert any("my cat is called Tom" in r.text for r in store.list("cli-user"))


def test_interactive_streams_and_keeps_history(tmp_path, fake_llm):
    proc = run_chat(["--user", "cli-user", "--memory_dir", str(tmp_path / "m"), "--lm_model_url", fake_llm.base_url],
                    stdin="first line\nsecond line\n\n")
    assert proc.returncode == 0, proc.stderr
    assert "You said: first line" in proc.stdout and "You said: second line" in proc.stdout
    # The answer's request, not the LLM router's (which offers tools and has no history) for an unsure turn.
    second_turn = next(r["messages"] for r in fake_llm.requests
                       if r["messages"][-1]["content"] == "second line" and not r.get("tools"))
    assert {"role": "user", "content": "first line"} in second_turn
    assert {"role": "assistant", "content": "You said: first line"} in second_turn


def test_invalid_user_id_is_a_clear_error(tmp_path):
    proc = run_chat(["--user", "../../etc", "--once", "hi", "--memory_dir", str(tmp_path)])
    assert proc.returncode == 2
    assert "invalid user id" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_question_is_a_clear_error(tmp_path, fake_llm):
    proc = run_chat(["--user", "u1", "--once", "  ", "--memory_dir", str(tmp_path),
                     "--lm_model_url", fake_llm.base_url])
    assert proc.returncode == 2
    assert "empty input" in proc.stderr


def test_help_documents_flags_in_groups():
    proc = run_chat(["--help"])
    assert proc.returncode == 0
    for text in ("LLM:", "Web search:", "Memory:", "--lm_model_url", "--serper_url", "--memory_dir",
                 "--embedding_model_name", "--init_chat_prompt"):
        assert text in proc.stdout


ENGLISH_SENTENCE = re.compile(r"[A-Za-z']+(?:[ ,]+[A-Za-z']+){2,}")  # three English words in a row


@pytest.mark.slow
def test_once_answers_offline_in_english_with_embedded_defaults(tmp_path):
    proc = run_chat(["--user", "offline", "--once", "What is the capital of France?",
                     "--memory_dir", str(tmp_path / "m")])
    assert proc.returncode == 0, proc.stderr
    answer = proc.stdout.strip()
    assert ENGLISH_SENTENCE.search(answer) and not HAN.search(answer), answer
    assert "embedded offline demo model" in proc.stderr


@pytest.mark.slow
def test_once_answers_offline_chinese_in_chinese_with_embedded_defaults(tmp_path):
    proc = run_chat(["--user", "offline-zh", "--once", "你好，请用一句话介绍你自己",
                     "--memory_dir", str(tmp_path / "m")])
    assert proc.returncode == 0, proc.stderr
    answer = proc.stdout.strip()
    assert HAN.search(answer), answer
    assert not ENGLISH_SENTENCE.search(answer), answer


def test_system_prompt_follows_the_language_of_the_turn(tmp_path, fake_llm):
    for question, expected in (("今天天气怎么样？", "用简体中文回答"), ("How is the weather?", "(English)")):
        proc = run_chat(["--user", "lang", "--once", question, "--memory_dir", str(tmp_path / "m"),
                         "--lm_model_url", fake_llm.base_url, "--extract_facts", "off", "--lm_tool_routing", "off"])
        assert proc.returncode == 0, proc.stderr
        # The reply's first system message holds the instructions; memories and reference material
        # follow in a system message of their own (issue 16), so read the first one.
        instructions = next(m["content"] for m in fake_llm.requests[-1]["messages"] if m["role"] == "system")
        assert expected in instructions
