"""Run callbacks: signed, at least once, retried with backoff, hosts checked twice.

A real worker delivers them to a real HTTP receiver, which checks every signature with
docs/api.md's snippet."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import uuid

import httpx
import pytest

from planner.callbacks import CallbackSender, refusal, sign, verify
from planner.errors import ConfigError
from planner.settings import Settings
from planner.store.keys import ACTIVE_RUNS, CALLBACK_ATTEMPTS, CALLBACKS_DUE, RunKeys
from planner.store.records import RunEvent, RunOptions, RunReport
from tests.remote.conftest import ALICE, BOB, BOB_SECRET, ECHO_PLAN, SECRET, Receiver, Stack


def hook(receiver: Receiver, name: str) -> tuple[str, str]:
    path = f"/hooks/{name}-{uuid.uuid4().hex[:8]}"
    return path, receiver.url + path


def event_of(stack: Stack, run_id: str, kind: str, timeout: float = 20) -> RunEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in stack.events(run_id) if e.type == kind]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event: {[e.type for e in stack.events(run_id)]}")


def ended_run(stack: Stack, url: str) -> str:
    """A run with a callback that has ended, made with the run store (as the engine does)."""
    store = stack.client.store
    run_id = store.create_run("ended", options=RunOptions(callback_url=url))
    assert store.finish_run(run_id, "succeeded", answer={"ok": True})
    return run_id


def test_a_run_posts_its_signed_report_when_it_ends(stack: Stack, receiver: Receiver):
    path, url = hook(receiver, "signed")
    client = stack.remote()
    run_id = client.submit(ECHO_PLAN, RunOptions(callback_url=url + "?token=receivers-own-secret"))
    assert client.wait(run_id, 30).status == "succeeded"
    [hit] = receiver.wait_for(path, 1)
    assert hit.verified  # docs/api.md's verification snippet accepts it
    assert hit.query == "token=receivers-own-secret"  # the URL as given, query included
    report = RunReport.model_validate_json(hit.body)
    assert report.run_id == run_id and report.answer == {"join": "hello"}
    assert report == client.report(run_id)  # the report GET /v1/runs/{id} gives
    stamp, signature = hit.headers["X-Chordal-Timestamp"], hit.headers["X-Chordal-Signature"]
    assert signature == sign(SECRET, stamp, hit.body) and signature.startswith("sha256=")
    assert abs(int(stamp) - time.time()) < 60
    assert hit.headers["X-Chordal-Delivery"].startswith(f"{run_id}.")
    # Tampered, replayed later, or signed with another secret: refused.
    assert verify(SECRET, hit.body, signature, stamp)
    assert not verify(SECRET, hit.body + b" ", signature, stamp)
    assert not verify(SECRET, hit.body, signature, stamp, now=int(stamp) + 301)
    assert not verify("another-secret", hit.body, signature, stamp)
    sent = event_of(stack, run_id, "run.callback_sent")
    # The event names where it went, never the URL's query (a receiver's token).
    assert sent.data == {"url": url, "status": 200, "attempts": 1,
                         "delivery": hit.headers["X-Chordal-Delivery"]}
    time.sleep(1.5)
    assert len(receiver.on(path)) == 1  # delivered, and done:
    assert stack.r.zscore(CALLBACKS_DUE, run_id) is None  # off the queue
    assert stack.r.hget(CALLBACK_ATTEMPTS, run_id) is None


def test_a_failing_receiver_gets_retries_with_backoff(stack: Stack, receiver: Receiver):
    path, url = hook(receiver, "flaky")
    receiver.failures[path] = 2  # 500, 500, then 200
    client = stack.remote()
    run_id = client.submit(ECHO_PLAN, RunOptions(callback_url=url))
    client.wait(run_id, 30)
    hits = receiver.wait_for(path, 3)
    assert all(h.verified for h in hits)
    assert len({h.headers["X-Chordal-Delivery"] for h in hits}) == 1  # one delivery id
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5  # CHORDAL_CALLBACK_BACKOFF_S=0.3, doubling
    assert event_of(stack, run_id, "run.callback_sent").data["attempts"] == 3


def test_a_receiver_that_keeps_failing_is_given_up_and_the_run_says_so(
        stack: Stack, receiver: Receiver):
    path, url = hook(receiver, "down")
    receiver.failures[path] = 1_000
    run_id = ended_run(stack, url)
    failed = event_of(stack, run_id, "run.callback_failed")
    assert failed.data["attempts"] == 3 and "answered 500" in failed.data["error"]
    assert len(receiver.on(path)) == 3  # CHORDAL_CALLBACK_ATTEMPTS
    assert not [e for e in stack.events(run_id) if e.type == "run.callback_sent"]


def test_hosts_are_checked_at_submission_and_again_at_delivery(stack: Stack,
                                                               receiver: Receiver):
    # Not allowed by the API: refused at once, naming the field.
    answer = httpx.post(f"{stack.url}/v1/runs", json={"plan": ECHO_PLAN, "callback_url":
                        "http://metadata.example.com/x"},
                        headers={"Authorization": f"Bearer {ALICE}"})
    assert answer.status_code == 422 and "callback_url" in answer.json()["error"]["message"]
    # Allowed by the API but not by the workers: given up at delivery, nothing sent.
    port = receiver.url.rsplit(":", 1)[1]
    client = stack.remote()
    run_id = client.submit(ECHO_PLAN, RunOptions(callback_url=f"http://localhost:{port}/hooks/x"))
    client.wait(run_id, 30)
    failed = event_of(stack, run_id, "run.callback_failed")
    assert failed.data["attempts"] == 1 and "'localhost' is not allowed" in failed.data["error"]
    # (A wildcard host that resolves to loopback is refused too: the allow-list's own
    # tests cover it; no name resolves to loopback reliably on every machine.)


def test_each_tenant_may_have_its_own_signing_key(stack: Stack, receiver: Receiver):
    """bob has a key of his own: his reports are signed with it, so a receiver of his
    never accepts one of alice's runs (aimed at him under a shared allowed host), and
    alice's receiver never accepts his."""
    path, url = hook(receiver, "bob")
    bobs = stack.remote(BOB).submit(ECHO_PLAN, RunOptions(callback_url=url))
    alices = stack.remote().submit(ECHO_PLAN, RunOptions(callback_url=url))
    hits = {RunReport.model_validate_json(h.body).run_id: h
            for h in receiver.wait_for(path, 2)}
    for run_id, key, other in ((bobs, BOB_SECRET, SECRET), (alices, SECRET, BOB_SECRET)):
        hit = hits[run_id]
        stamp, signature = hit.headers["X-Chordal-Timestamp"], hit.headers[
            "X-Chordal-Signature"]
        assert verify(key, hit.body, signature, stamp), run_id
        assert not verify(other, hit.body, signature, stamp), run_id
    # The shared key signs every run while no tenant has its own; once some do, a tenant
    # without one gets no signature (its callbacks are given up, naming the setting).
    shared = Settings.from_env({"CHORDAL_CALLBACK_SECRET": SECRET})
    assert shared.callbacks.callback_key("bob") == shared.callbacks.callback_key(None) == SECRET
    both = Settings.from_env({"CHORDAL_CALLBACK_SECRET": SECRET,
                              "CHORDAL_CALLBACK_SECRETS": json.dumps({"bob": BOB_SECRET})})
    assert both.callbacks.callback_key("bob") == BOB_SECRET
    assert both.callbacks.callback_key(None) == SECRET
    assert both.callbacks.callback_key("carol") is None
    with pytest.raises(ConfigError, match="CHORDAL_CALLBACK_SECRETS") as caught:
        Settings.from_env({"CHORDAL_CALLBACK_SECRETS": '{"bob": "short-leaked"}'})
    assert "short-leaked" not in str(caught.value)


def test_where_a_callback_may_go():
    allow = ["hooks.example.com", "*.example.org", "127.0.0.1", "intranet.local"]
    public, private = ["93.184.216.34"], ["10.1.2.3"]
    assert refusal("https://hooks.example.com/x", allow, public) is None
    assert refusal("https://a.example.org/x", allow, public) is None
    # A wildcard never reaches a private, loopback or link-local address...
    for address in ("10.1.2.3", "127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1",
                    "100.64.0.1", "fd00::1"):
        why = refusal("https://a.example.org/x", allow, [address])
        assert why is not None and "non-public" in why, address
        assert address not in why  # the run's events never say what internal names are
    # ... one of several addresses is enough to refuse (the resolver may rotate them)...
    assert refusal("https://a.example.org/x", allow, [*public, *private]) is not None
    # ... a host named exactly may (the operator said so).
    assert refusal("http://intranet.local:8080/x", allow, private) is None
    assert refusal("http://127.0.0.1:9/x", allow, ["127.0.0.1"]) is None
    assert "not allowed" in str(refusal("https://example.org/x", allow, public))
    assert "credentials" in str(refusal("https://u:p@hooks.example.com/", allow, public))
    assert "http:// or https://" in str(refusal("ftp://hooks.example.com/", allow, public))
    assert "no callbacks" in str(refusal("https://hooks.example.com/", [], public))


def test_a_claim_is_held_by_one_sender_and_passes_on_when_its_holder_dies(
        stack: Stack, receiver: Receiver):
    settings = Settings.from_env(stack.env)
    holder = CallbackSender(stack.client.store, settings, lease_s=3.0)  # a busy machine
    other = CallbackSender(stack.client.store, settings)
    path, url = hook(receiver, "lease")
    group = stack.worker.process.pid
    os.killpg(group, signal.SIGSTOP)  # the worker's senders stand still meanwhile
    try:
        run_id = ended_run(stack, url)
        claim = holder.claim()
        assert claim is not None and claim.run_id == run_id and claim.attempt == 1
        assert other.claim() is None  # held: nobody else sends it meanwhile
    finally:
        os.killpg(group, signal.SIGCONT)
    # The holder "dies" without a word; once its lease lapses, the worker delivers it.
    [hit] = receiver.wait_for(path, 1)
    assert hit.verified
    assert event_of(stack, run_id, "run.callback_sent").data["attempts"] == 2
    assert holder.settle(claim) is False  # too late: no longer its claim
    holder.close()
    other.close()


def test_a_finisher_that_dies_before_queuing_leaves_it_to_the_reconciler(
        stack: Stack, receiver: Receiver):
    """The run ends (its script ran) but the process dies before the callback is queued:
    the run is still in chordal:active, and the reconciler queues it."""
    path, url = hook(receiver, "orphan")
    store = stack.client.store
    run_id = store.create_run("dies", options=RunOptions(callback_url=url))
    k = RunKeys(run_id)
    assert store._run("finish_run", [k.run, k.events, k.steps, k.deps], "succeeded",
                      json.dumps("done"), "", "0")  # the script only; nothing after it
    assert store.r.zscore(ACTIVE_RUNS, run_id) is not None
    [hit] = receiver.wait_for(path, 1, timeout=20)
    assert hit.verified and RunReport.model_validate_json(hit.body).answer == "done"
    assert store.r.zscore(ACTIVE_RUNS, run_id) is None
