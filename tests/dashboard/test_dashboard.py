"""The dashboard in a real browser (headless Chromium): live updates, paging, actions
seen through the protocol, hostile bodies, keyboard use, no console errors; screenshots
of each page."""

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import shot

WAIT = 10


def wait(driver):
    return WebDriverWait(driver, WAIT)


def row(driver, tube):
    return driver.find_elements(By.CSS_SELECTOR, f'#tubes tbody tr[data-name="{tube}"]')


def cell(driver, tube, col):
    rows = row(driver, tube)
    return rows[0].find_elements(By.CSS_SELECTOR, "td")[col - 1].text if rows else None


def test_overview_lists_tubes_and_updates_live(sproutd, page):
    p = sproutd.proto()
    p.cmd("use emails")
    p.put(b"first")
    page.get(sproutd.url + "/")
    wait(page).until(lambda d: cell(d, "emails", 1) == "1")
    assert row(page, "default")
    # A new tube and more jobs appear without a reload (the event stream).
    marker = page.execute_script("window.__same_page = 1; return 1")
    p.cmd("use fresh")
    for _ in range(3):
        p.put(b"x")
    wait(page).until(lambda d: cell(d, "fresh", 1) == "3")
    p.cmd("use emails")
    p.put(b"second")
    wait(page).until(lambda d: cell(d, "emails", 1) == "2")
    wait(page).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '#summary [data-k="ready"]').text == "5")
    assert page.execute_script("return window.__same_page") == marker, "no reload"
    # The charts are drawn.
    wait(page).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#c-jobs polyline"))
    shot(page, "overview")
    # Filter by name (client side, as typed).
    page.find_element(By.ID, "filter").send_keys("fre")
    wait(page).until(lambda d: "hidden" in row(d, "emails")[0].get_attribute("class"))
    assert "hidden" not in (row(page, "fresh")[0].get_attribute("class") or "")
    p.close()


def test_tables_sort_from_the_keyboard(sproutd, page):
    p = sproutd.proto()
    for tube, n in (("a-few", 1), ("b-many", 3), ("c-some", 2)):
        p.cmd(f"use {tube}")
        for _ in range(n):
            p.put(b"x")
    page.get(sproutd.url + "/")
    wait(page).until(lambda d: cell(d, "c-some", 1) == "2")
    button = page.find_element(By.CSS_SELECTOR, '#tubes thead button[data-col="1"]')
    button.send_keys(Keys.ENTER)  # ascending by ready
    button.send_keys(Keys.ENTER)  # descending
    wait(page).until(lambda d: button.get_attribute("aria-sort") == "descending")
    names = [r.get_attribute("data-name")
             for r in page.find_elements(By.CSS_SELECTOR, "#tubes tbody tr")]
    assert names[:3] == ["b-many", "c-some", "a-few"], names
    p.close()


def test_tube_page_pages_through_5000_jobs(sproutd, page):
    p = sproutd.proto()
    p.cmd("use bulk")
    ids = []
    for start in range(0, 5000, 1000):
        ids += p.put_many([b"job %d" % i for i in range(start, start + 1000)])
    url = sproutd.url + "/tube/bulk?state=ready&limit=500"
    # The tube's history starts with the first sample after it appeared (once a second):
    # reload until its charts are there.
    wait(page).until(lambda d: d.get(url) or d.find_elements(By.CSS_SELECTOR, "#c-jobs polyline"))
    # The event stream adds a sample a second to the charts.
    wait(page).until(lambda d: d.execute_script(
        "return document.querySelector('#c-jobs polyline').getAttribute('points')"
        ".split(' ').length >= 3"))
    shot(page, "tube")
    seen = []
    while True:
        # One round trip for the page's ids (not one per element).
        seen += page.execute_script(
            "return Array.from(document.querySelectorAll('#jobs tbody th a'),"
            " a => Number(a.textContent))")
        nxt = page.find_elements(By.ID, "next")
        if not nxt:
            break
        old = page.find_element(By.ID, "jobs")
        nxt[0].click()
        wait(page).until(EC.staleness_of(old))
    assert seen == ids
    p.close()


def test_kick_a_buried_job_and_n_jobs_from_the_browser(sproutd, page):
    p = sproutd.proto()
    p.cmd("use work")
    p.cmd("watch work")
    for body in (b"one", b"two", b"three"):
        p.put(body)
    buried = []
    for _ in range(3):
        head = p.cmd("reserve")
        p.data(head)
        jid = int(head.split()[1])
        assert p.cmd(f"bury {jid} 0") == "BURIED"
        buried.append(jid)
    page.get(f"{sproutd.url}/job/{buried[0]}")
    shot(page, "job")
    page.find_element(By.ID, "kick-job").click()
    wait(page).until(lambda d: "KICKED" in d.find_element(By.CLASS_NAME, "flash").text)
    assert p.yaml(f"stats-job {buried[0]}")["state"] == "ready"
    page.get(f"{sproutd.url}/tube/work?state=buried")
    n = page.find_element(By.CSS_SELECTOR, 'input[name="n"]')
    n.clear()
    n.send_keys("2")
    page.find_element(By.ID, "kick").click()
    wait(page).until(lambda d: "KICKED 2" in d.find_element(By.CLASS_NAME, "flash").text)
    t = p.yaml("stats-tube work")
    assert (t["current-jobs-ready"], t["current-jobs-buried"]) == ("3", "0")
    p.close()


def test_flush_a_tube_from_the_browser(sproutd, page):
    p = sproutd.proto()
    p.cmd("use trash")
    for _ in range(4):
        p.put(b"junk")
    page.get(sproutd.url + "/tube/trash")
    # Not without the confirmation: the browser refuses to submit.
    page.find_element(By.ID, "flush").click()
    assert p.yaml("stats-tube trash")["current-jobs-ready"] == "4"
    page.find_element(By.ID, "flush-confirm").click()
    page.find_element(By.ID, "flush").click()
    wait(page).until(lambda d: "FLUSHED 4" in d.find_element(By.CLASS_NAME, "flash").text)
    head = p.cmd("stats-tube trash")
    if head.startswith("OK "):
        t = {k: v for k, v in (l.split(": ", 1) for l in p.data(head).decode().splitlines()
                                if ": " in l)}
        assert t["current-jobs-ready"] == "0"
    else:
        assert head == "NOT_FOUND"
    p.close()


def test_a_script_body_is_shown_as_text(sproutd, page):
    p = sproutd.proto()
    p.cmd("use evil")
    body = b"<script>document.title='pwned';window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
    jid = p.put(body)
    page.get(f"{sproutd.url}/job/{jid}")
    assert page.find_element(By.ID, "body").text == body.decode()
    assert page.execute_script("return window.__pwned === undefined")
    assert page.title != "pwned"
    page.get(sproutd.url + "/tube/evil")
    assert "<script>document.title" in page.find_element(By.CSS_SELECTOR, "#jobs td.body").text
    assert page.execute_script("return window.__pwned === undefined")
    p.close()


def test_phone_width_dark_mode_and_the_other_pages(sproutd, page):
    p = sproutd.proto()
    p.cmd("use mobile")
    p.put(b"small screen")
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    page.set_window_size(390, 844)
    page.get(sproutd.url + "/")
    wait(page).until(lambda d: row(d, "mobile"))
    # No horizontal scrolling of the page itself (tables scroll in their box).
    assert page.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1")
    bg = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(22, 24, 27)", bg
    shot(page, "overview-phone-dark")
    page.get(sproutd.url + "/tube/mobile")
    shot(page, "tube-phone-dark")
    page.set_window_size(1280, 800)
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    page.get(sproutd.url + "/cluster")
    assert "not clustered" in page.find_element(By.TAG_NAME, "main").text
    shot(page, "cluster")
    # /cluster answers 404 (the console reports it): not an error of the page.
    page.get_log("browser")
    p.close()
