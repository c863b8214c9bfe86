"""The web console's flows in a real headless Chromium (Debian's chromium and
chromium-driver), driven by Selenium. Run by host/tests/api/console.rs, which
starts the server, seeds two tenants and writes the JSON file named as the
only argument; every check here raises on failure and the process exits
non-zero. Screenshots of each page go to the directory the file names.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException, StaleElementReferenceException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

cfg = json.load(open(sys.argv[1]))
BASE = cfg["base"]
SHOTS = cfg["screenshots"]
os.makedirs(SHOTS, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = cfg.get("chromium", "/usr/bin/chromium")
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            "--disable-gpu", "--window-size=1366,1000", "--no-first-run"):
    options.add_argument(arg)
service = Service(executable_path=cfg.get("chromedriver", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=options)
driver.set_page_load_timeout(30)
# Live pages swap their <main> every two seconds and a click navigates:
# an element found a moment ago may be gone. Waits and reads try again.
GONE = (NoSuchElementException, StaleElementReferenceException)
wait = WebDriverWait(driver, 60, poll_frequency=0.2, ignored_exceptions=GONE)


def replaced(error):
    """Whether `error` says the element was replaced under the read: gone,
    stale, or (chromium, mid-navigation) a node no longer in the document."""
    return isinstance(error, GONE) or (
        isinstance(error, WebDriverException)
        and "does not belong to the document" in str(error))


def again(read, tries=50):
    """`read()`, tried again while what it reads is being replaced."""
    for _ in range(tries - 1):
        try:
            return read()
        except WebDriverException as error:
            if not replaced(error):
                raise
            time.sleep(0.1)
    return read()


def step(name):
    print(f"-- {name}", flush=True)


def shot(name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def go(path):
    driver.get(BASE + path)


def title():
    return again(lambda: driver.find_element(By.TAG_NAME, "h1").text)


def page_text():
    return again(lambda: driver.find_element(By.TAG_NAME, "body").text)


def expect(cond, what):
    if not cond:
        shot("failure")
        raise AssertionError(f"{what}\n--- page at {driver.current_url}:\n{page_text()}")


def sign_in(token):
    go("/login")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.signin button").click()
    wait.until(lambda d: "/login" not in d.current_url)


def sign_out():
    if not driver.find_elements(By.CSS_SELECTOR, "form.signout button"):
        go("/fleet")
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait.until(lambda d: d.current_url.endswith("/login"))


def post_from_page(path, body):
    """A POST made by script from the page (as a forged form would be): the
    status the server answers."""
    return driver.execute_async_script(
        """const [path, body, done] = arguments;
        fetch(path, {method: 'POST', body: body, redirect: 'manual',
                     headers: {'content-type': 'application/x-www-form-urlencoded'}})
          .then(r => done(r.status)).catch(e => done(String(e)));""",
        path, body)


def run_now(playbook_name):
    go("/playbooks")
    row = driver.find_element(By.XPATH, f"//tr[td[1][normalize-space()='{playbook_name}']]")
    row.find_element(By.XPATH, ".//button[normalize-space()='Run now']").click()
    wait.until(lambda d: "/runs/" in d.current_url)
    return driver.current_url.rsplit("/", 1)[1]


def wait_live_status(expected):
    """Waits, without reloading, for the live run page to show `expected`."""
    url = driver.current_url
    wait.until(lambda d: d.find_element(By.ID, "run-status").text == expected)
    expect(driver.current_url == url, "the page was not navigated away")


try:
    step("an unsigned visit goes to the sign-in page")
    go("/fleet")
    expect("/login" in driver.current_url, "redirected to sign in")
    shot("login")

    step("a wrong token is refused")
    driver.find_element(By.NAME, "token").send_keys("stw_not_a_token")
    driver.find_element(By.CSS_SELECTOR, "form.signin button").click()
    wait.until(lambda d: "unknown or revoked" in page_text())

    step("sign in as the technician; the session cookie is HttpOnly")
    sign_in(cfg["tech_token"])
    expect(title() == "Fleet", "lands on the fleet")
    cookies = {c["name"]: c for c in driver.get_cookies()}
    session = cookies.get("steward_session")
    expect(session and session["httpOnly"] and session.get("sameSite") == "Strict",
           f"the session cookie is HttpOnly and SameSite=Strict: {session}")
    expect(driver.execute_script("return document.cookie").find("steward_session") < 0,
           "scripts cannot read the session cookie")
    expect(cfg["device_name"] in page_text(), "the tenant's device is listed")
    expect(cfg["other_device_name"] not in page_text(), "another tenant's device is not")
    shot("fleet")

    step("fleet -> device")
    driver.find_element(By.LINK_TEXT, cfg["device_name"]).click()
    wait.until(lambda d: title().startswith("Device"))
    expect("Open findings" in page_text(), "the device page shows findings")
    shot("device")

    step("start a check run and watch it finish live")
    run_id = run_now("patch status")
    shot("run-live")
    wait_live_status("succeeded")
    expect("Security update pending" in page_text(), "the run's findings are shown")
    expect(cfg["device_name"] in page_text(), "its jobs name the device")
    shot("run")

    step("the runs list shows it")
    go("/runs")
    expect(run_id[-10:] in page_text(), "the run is listed")
    shot("runs")

    step("one tenant's fleet shows its month so far in charts")
    go(f"/fleet?tenant={cfg['tenant']}")
    expect("so far" in page_text() and driver.find_elements(By.CSS_SELECTOR, ".charts svg"),
           "the tenant's charts")
    expect("2 security" not in page_text() and "1 security" in page_text(),
           "the device's pending security update is shown")
    shot("fleet-tenant")

    step("approve a pending remediation and see the run complete")
    fix_id = run_now("patch now")
    # A second one stays waiting, for the viewer to look at below.
    run_now("patch now")
    go("/approvals")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.approval")) == 2)
    expect("Planned changes" in page_text(), "the planned changes are shown")
    shot("approvals")
    def approve():
        section = next(s for s in driver.find_elements(By.CSS_SELECTOR, "section.approval")
                       if fix_id[-10:] in s.text)
        field = section.find_element(By.NAME, "comment")
        if not field.get_attribute("value"):
            # Typing stops the page's refresh, so the rest finds the same form.
            field.send_keys("approved in the browser test")
        section.find_element(By.CSS_SELECTOR, "button.approve").click()
    again(approve)
    wait.until(lambda d: d.current_url.endswith("/approvals"))
    go(f"/runs/{fix_id}")
    wait_live_status("succeeded")
    expect("Applied" in page_text(), "the applied changes are shown")
    shot("run-approved")

    step("another tenant's run and device are 404 pages")
    for path in (f"/runs/{cfg['other_run']}", f"/devices/{cfg['other_device']}"):
        go(path)
        expect(title() == "Not found", f"{path} is a 404 page")
    shot("not-found")

    step("a form without its CSRF token is refused")
    go("/playbooks")
    driver.execute_script(
        "document.querySelectorAll('form.inline input[name=csrf]').forEach(e => e.remove())")
    driver.find_element(By.XPATH, "//button[normalize-space()='Run now']").click()
    wait.until(lambda d: title() == "Not allowed")
    expect("CSRF" in page_text(), "the refusal names the CSRF token")
    shot("csrf-refused")
    go("/playbooks")
    expect(post_from_page(f"/playbooks/{cfg['check_playbook']}/run", "csrf=wrong") == 403,
           "a wrong CSRF token is a 403")

    step("the other pages render")
    for path, name in (("/schedules", "schedules"), ("/plugins", "plugins"),
                       ("/audit", "audit")):
        go(path)
        expect(title() != "Not found", f"{path} renders")
        shot(name)
    expect("approval.approve" in page_text(), "the audit trail shows the approval")

    step("the client report of this month opens as a printable document")
    go("/reports")
    shot("reports")
    driver.execute_script(
        "document.querySelector('input[name=month]').value = arguments[0]", cfg["month"])
    driver.find_element(By.XPATH, "//button[normalize-space()='Open report']").click()
    wait.until(lambda d: "service report" in title())
    text = page_text()
    expect("Time to remediate" in text and "Patch compliance" in text, "the report's sections")
    expect("Security updates applied" in text, "patch figures")
    shot("report")

    step("sign out ends the session")
    sign_out()
    go("/fleet")
    expect("/login" in driver.current_url, "signed out: back to sign in")

    step("a viewer sees no change buttons and a forged post is refused")
    sign_in(cfg["viewer_token"])
    for path in ("/playbooks", f"/runs/{run_id}", "/approvals"):
        go(path)
        if path == "/approvals":
            expect(driver.find_elements(By.CSS_SELECTOR, "section.approval"),
                   "the viewer sees the waiting remediation")
        expect(not driver.find_elements(By.CSS_SELECTOR, "main form[method=post]"),
               f"{path} has no forms that change anything for a viewer")
    shot("viewer-playbooks")
    csrf = driver.find_element(By.CSS_SELECTOR, "form.signout input[name=csrf]").get_attribute("value")
    status = post_from_page(f"/playbooks/{cfg['check_playbook']}/run", f"csrf={csrf}")
    expect(status == 403, f"a viewer's post with a valid CSRF token is refused: {status}")
    sign_out()
    print("console flows passed", flush=True)
except Exception:
    shot("failure")
    raise
finally:
    driver.quit()
