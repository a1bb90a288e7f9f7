"""What a person does in the Studio, in order: train the demo from the Overview and watch
the loss chart, chat with the adapter, publish it, call it with the page's own samples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

RUN: dict[str, str] = {}


def expect_text(page, selector: str, pattern: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.locator(selector).first.inner_text()
        if re.search(pattern, text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector!r} never matched {pattern!r}; last: {text!r}")
        page.wait_for_timeout(200)


def expect_true(page, expression: str, timeout_s: float = 20) -> None:
    """Poll ``expression`` with ``page.evaluate``: the Studio's CSP forbids eval, which
    Playwright's in-page ``wait_for_function`` polling uses."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression!r} never became true")
        page.wait_for_timeout(100)


def run_curl(sample: str, key: str | None = None) -> tuple[int, str]:
    command = sample.replace("YOUR_API_KEY", key or "YOUR_API_KEY") + " -s -w '\\n%{http_code}'"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_train_the_demo_from_the_overview(page) -> None:
    page.goto("/")
    page.get_by_text("Training settings").click()
    page.get_by_label("Max steps").fill("3")
    page.get_by_label("Eval every N steps").fill("2")
    page.get_by_label("Checkpoint every N steps").fill("1")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    RUN["job"] = page.url.rsplit("/", 1)[1]
    chart = page.locator("loss-chart")
    chart.locator("svg").wait_for(timeout=180_000)  # the first training.log point
    expect_text(page, ".page-head status-badge", "^completed$", timeout_s=240)
    assert int(chart.get_attribute("data-train-points")) == 3
    assert int(chart.get_attribute("data-eval-points")) >= 1
    # The job row (polled) can report completed before the event stream delivers the event.
    completed_rows = page.locator(".events li").filter(has_text="training.completed")
    completed_rows.first.wait_for(timeout=30_000)
    assert completed_rows.count() == 1
    assert page.get_by_role("link", name="Open in Playground").is_visible()
    assert page.locator("text=step 3").count() >= 1  # checkpoints list
    page.get_by_role("switch", name="Advanced").check()
    stats = page.locator("loss-chart table.stats")
    assert "Mean ± 95% CI" in stats.inner_text() and "train (n=3)" in stats.inner_text()


def test_advanced_loss_statistics_match_python(page) -> None:
    """The Advanced view's numbers, checked against Python's statistics module."""
    import statistics

    values = [2.5, 1.75, 1.5, 1.25, 0.5]
    page.goto("/")
    got = page.evaluate("async (xs) => (await import('/stats.js')).summarize(xs)", values)
    mean, std = statistics.mean(values), statistics.stdev(values)
    assert got["n"] == 5 and abs(got["mean"] - mean) < 1e-12
    assert abs(got["std"] - std) < 1e-12 and abs(got["variance"] - std ** 2) < 1e-12
    assert abs(got["half"] - 2.776 * std / 5 ** 0.5) < 1e-12  # Student t, 4 degrees of freedom
    deciles = statistics.quantiles(values, n=20, method="inclusive")
    assert abs(got["p90"] - deciles[17]) < 1e-12 and abs(got["p95"] - deciles[18]) < 1e-12
    many = page.evaluate("async (xs) => (await import('/stats.js')).summarize(xs)",
                         list(range(40)))
    assert abs(many["half"] - 1.96 * statistics.stdev(range(40)) / 40 ** 0.5) < 1e-9


def test_chat_with_the_trained_adapter(page) -> None:
    page.goto(f"/#/playground?adapter={RUN['job']}")
    page.locator("#pg-adapter option").first.wait_for(state="attached")
    assert page.get_by_role("radio", name="Adapter").is_checked()
    assert page.locator("#pg-adapter").input_value() == RUN["job"]
    page.get_by_role("button", name="Use the support-triage demo prompt").click()
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Message").fill("I was charged twice for my subscription this month.")
    page.get_by_role("button", name="Send message").click()
    reply = page.locator(".bubble.assistant .text")
    reply.and_(page.locator(":not(.streaming)")).wait_for(timeout=120_000)
    text = reply.inner_text()
    assert text.strip() and not text.startswith("[error]")


def test_the_job_page_keeps_its_links_while_it_polls(page) -> None:
    """The page redraws on every poll and event; a redraw that changes nothing leaves the
    links in place, so a click in flight is not lost (one CI run's click on "Deploy this
    adapter" landed on a link being replaced and went nowhere)."""
    page.goto(f"/#/jobs/{RUN['job']}")
    deploy = page.get_by_role("link", name="Deploy this adapter").element_handle()
    checkpoint = page.get_by_role("link", name="Deploy", exact=True).first.element_handle()
    with page.expect_response(lambda r: r.url.endswith("/api/jobs")):
        pass  # the next poll
    page.wait_for_timeout(300)
    assert deploy.evaluate("e => e.isConnected") and checkpoint.evaluate("e => e.isConnected")


def test_publish_call_revoke_disable_retarget_delete(page, dev_server) -> None:
    job = RUN["job"]
    page.goto(f"/#/jobs/{job}")
    page.get_by_role("link", name="Deploy this adapter").click()
    page.get_by_label("Slug").fill("e2e-bot")
    page.locator("target-picker select").first.wait_for()
    expect_text(page, "target-picker select", "support-triage")
    assert page.locator("target-picker select").first.input_value() == job
    page.get_by_role("button", name="Create endpoint").click()
    row = page.locator("a.list-row").filter(has_text="e2e-bot")
    row.wait_for()
    assert f"Final adapter (job {job[:8]})" in row.inner_text()

    page.get_by_role("button", name="New endpoint").click()  # a taken slug: 409 inline
    page.get_by_label("Slug").fill("e2e-bot")
    expect_text(page, "target-picker select", "support-triage")
    page.get_by_role("button", name="Create endpoint").click()
    page.get_by_text("Deployment slug is already taken").wait_for()
    assert page.get_by_role("button", name="Create endpoint").is_visible()
    page.console_errors[:] = [e for e in page.console_errors if "409" not in e]
    page.get_by_role("button", name="Cancel").first.click()

    row.click()
    page.get_by_role("heading", name="e2e-bot").wait_for()
    url = page.locator("#endpoint-url").inner_text()
    assert url == f"{dev_server.cloud_url}/d/e2e-bot/v1/chat/completions"

    page.get_by_label("API key label").fill("e2e")
    page.get_by_role("button", name="Issue key").click()
    page.get_by_text("Copy this key now. It cannot be shown again.").wait_for()
    key = page.locator("#key-plaintext").inner_text()
    assert key.startswith("ark_live_")

    curl = page.locator("quick-start pre").inner_text()
    assert curl.startswith(f"curl -X POST {url} \\")
    assert 'Authorization: Bearer YOUR_API_KEY' in curl
    status, body = run_curl(curl, key)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"].strip()

    page.get_by_label("Language").select_option(label="Python (OpenAI SDK)")
    python = page.locator("quick-start pre").inner_text()
    assert f'base_url="{dev_server.cloud_url}/d/e2e-bot/v1"' in python
    result = subprocess.run([sys.executable, "-c", python.replace("YOUR_API_KEY", key)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()

    page.get_by_role("button", name="I've saved it").click()
    deadline = time.monotonic() + 20
    while "last used" not in page.locator("ul.list").last.inner_text():
        assert time.monotonic() < deadline, "lastUsedAt never showed"
        page.wait_for_timeout(1000)
        page.reload()
        page.get_by_role("button", name="Revoke").wait_for()

    page.get_by_role("button", name="Revoke").click()
    page.locator(".revoked").filter(has_text="e2e").wait_for()
    assert run_curl(curl, key)[0] == 401

    page.get_by_role("button", name="Disable").click()
    page.get_by_role("button", name="Enable").wait_for()
    assert run_curl(curl, key)[0] == 404
    page.get_by_role("button", name="Enable").click()
    page.get_by_role("button", name="Disable").wait_for()
    assert run_curl(curl, key)[0] == 401

    page.get_by_label("Auth mode").select_option(label="No auth (public)")
    page.get_by_text("Auth is set to none; keys are not enforced.").wait_for()
    page.get_by_label("Language").select_option(label="cURL")
    open_curl = page.locator("quick-start pre").inner_text()
    assert "Authorization" not in open_curl
    assert run_curl(open_curl)[0] == 200

    page.get_by_role("button", name="Change target").click()
    page.locator("settings, .setting").get_by_label("Specific checkpoint").check()
    page.locator(".setting target-picker").get_by_label("Checkpoint", exact=True).select_option("2")
    page.get_by_role("button", name="Save target").click()
    page.get_by_text(f"Checkpoint step 2 (job {job[:8]})").first.wait_for()

    page.locator(".setting retention-fields select").select_option("unlimited")
    page.get_by_role("button", name="Save retention").click()
    token = page.locator('meta[name="arkor-studio-token"]').get_attribute("content")
    deadline = time.monotonic() + 10
    while True:
        deployments = httpx.get(dev_server.url + "/api/deployments",
                                headers={"X-Arkor-Studio-Token": token}).json()["deployments"]
        if deployments[0]["runRetentionMode"] == "unlimited" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert deployments[0]["runRetentionMode"] == "unlimited"
    assert deployments[0]["target"]["adapter"] == {"kind": "checkpoint", "jobId": job, "step": 2}

    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"#/endpoints$"))
    page.get_by_text("No endpoints yet").wait_for()
    assert run_curl(open_curl)[0] == 404


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_endpoint_detail_screenshots(page, theme: str) -> None:
    """A deployment with a fresh key on screen, for looking at the busiest page."""
    page.goto("/")
    page.evaluate(f"localStorage.setItem('arkor-studio-theme', '{theme}')")
    page.goto("/#/endpoints?new=1")
    page.get_by_label("Slug").fill(f"shots-{theme}")
    expect_true(page, "document.querySelector('target-picker').loaded")
    page.get_by_label("Base model only (no LoRA)").check()
    page.get_by_role("button", name="Create endpoint").click()
    page.locator("a.list-row").filter(has_text=f"shots-{theme}").click()
    page.get_by_text("No keys yet.").wait_for()
    page.get_by_label("API key label").fill("production")
    page.get_by_role("button", name="Issue key").click()
    page.locator("#key-plaintext").wait_for()
    page.reload()  # the theme applies on load; the leave-page guard asks first (accepted)
    page.get_by_role("heading", name=f"shots-{theme}").wait_for()
    page.locator("ul.list li").first.wait_for()
    from tests.e2e.conftest import SCREENSHOTS

    page.screenshot(path=str(SCREENSHOTS / f"endpoint-detail-{theme}.png"), full_page=True)
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"#/endpoints$"))


def test_a_key_label_typed_a_key_at_a_time_keeps_every_key(page) -> None:
    """The keys' box redraws on every keystroke (the button's state) and when the page's
    data arrives; the label's input stays in the page, so it keeps its focus. It used to be
    taken out and put back: focus went to the page after the first character (and a label
    filled while the deployment's data arrived was lost, the button disabled for good)."""
    page.goto("/#/endpoints?new=1")
    page.get_by_label("Slug").fill("typed-label")
    expect_true(page, "document.querySelector('target-picker').loaded")
    page.get_by_label("Base model only (no LoRA)").check()
    page.get_by_role("button", name="Create endpoint").click()
    page.locator("a.list-row").filter(has_text="typed-label").click()
    label = page.get_by_label("API key label")
    label.press_sequentially("production", delay=20)
    assert label.input_value() == "production"
    assert page.evaluate("document.activeElement.id") == "key-label"
    page.get_by_role("button", name="Issue key").click()
    page.locator("#key-plaintext").wait_for()
    page.get_by_role("button", name="I've saved it").click()
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"#/endpoints$"))


def start_a_long_run(page) -> str:
    """The demo with enough steps to still be going when a test stops it; its job id."""
    page.goto("/")
    page.get_by_text("Training settings").click()
    page.get_by_label("Max steps").fill("500")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_cancel_a_running_job_from_its_page(page) -> None:
    job = start_a_long_run(page)
    expect_text(page, ".page-head status-badge", "^running$", timeout_s=120)
    asked: list[str] = []
    page.on("dialog", lambda dialog: asked.append(dialog.message))  # the fixture accepts it
    page.get_by_role("button", name="Cancel run").click()
    expect_text(page, ".page-head status-badge", "^cancelled$")
    assert asked == ["Cancel this training run? Its checkpoints so far are kept."]
    assert page.get_by_role("button", name="Cancel run").count() == 0
    assert page.get_by_role("link", name="Open in Playground").count() == 0
    page.locator(".events li").filter(has_text="training.cancelled").wait_for()

    page.goto("/#/jobs")
    page.get_by_role("button", name="Cancelled").click()
    row = page.locator("tbody tr").filter(has=page.locator(f'td[title="{job}"]'))
    assert row.locator("status-badge").get_attribute("status") == "cancelled"


def test_a_refused_cancel_is_shown_on_the_page(page, dev_server) -> None:
    """The job is cancelled elsewhere just before the page's own request reaches the server,
    which answers 409: the page says so, and drops the button once the job has ended."""
    job = start_a_long_run(page)
    token = page.locator('meta[name="arkor-studio-token"]').get_attribute("content")

    def cancelled_elsewhere_first(route) -> None:
        response = httpx.post(route.request.url, headers={"X-Arkor-Studio-Token": token})
        assert response.status_code == 200, response.text
        route.continue_()

    page.route(f"**/api/jobs/{job}/cancel", cancelled_elsewhere_first)
    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("alert").filter(
        has_text="Couldn't cancel: Job is already cancelled").wait_for()
    expect_text(page, ".page-head status-badge", "^cancelled$")
    assert page.get_by_role("button", name="Cancel run").count() == 0
    page.console_errors[:] = [e for e in page.console_errors if "409" not in e]
