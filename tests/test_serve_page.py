"""`nanobark serve`'s web page (nanobark/serve/page.html) in a real browser: Debian's headless Chromium, driven by
selenium, against the server started as a subprocess with a tiny random model. Without Chromium, chromedriver or
selenium these tests are skipped, saying what to install; in CI (the variable CI is set) they fail instead."""

import base64
import importlib.util
import io
import json
import os
import shutil
import signal

import numpy as np
import pytest
import soundfile as sf

from helpers import HANG, speech

pytestmark = pytest.mark.slow


def missing():
    """-> what to install for the browser tests, in a sentence; "" when this machine has it all."""
    programs = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    packages = [name for name in ("selenium", "openai", "fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if not programs + packages:
        return ""
    how = (["apt-get install chromium chromium-driver"] if programs else []) + (
        ["pip install -e '.[test]'"] if packages else []
    )
    return f"the browser tests need {', '.join(programs + packages)}: {' and '.join(how)}"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, as a person's browser: sound allowed without a click, and a fake
    microphone (a beeping test signal) that the page may use without asking."""
    message = missing()
    if message:
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs them (.ci/run): missing there is a broken CI, not a skip
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI and containers run as root, where Chromium's sandbox does not start
        "--disable-dev-shm-usage",  # containers' /dev/shm is small
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--window-size=1000,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(browser, converted, cloning_sources, tmp_path_factory):
    """`nanobark serve` with the tiny model, cloning's random HuBERT and quantizer, and an API key (serving.start)."""
    from serving import KEY, start

    hubert, quantizer_dir = cloning_sources
    quantizer = os.path.join(quantizer_dir, "quantifier_hubert_base_ls960_14.pth")
    folder = str(tmp_path_factory.mktemp("serve"))
    p, served = start(converted, folder, "--api-key", KEY, "--hubert", hubert, "--quantizer", quantizer)
    served.url = f"http://127.0.0.1:{served.port}/"
    yield served
    p.send_signal(signal.SIGTERM)
    p.wait(HANG)


def wait(driver, condition, timeout=HANG):
    """Wait until condition(driver) is true; a message the page shows in its error box fails the test at once."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        error = d.find_element("id", "error")
        assert not error.is_displayed(), f"the page shows an error: {error.text}"
        return condition(d)

    return WebDriverWait(driver, timeout).until(done)


def open_page(driver, server):
    """Load the page with the server's API key in the browser's storage, as a person who typed it once."""
    driver.get(server.url)
    driver.execute_script("localStorage.setItem('nanobark-api-key', arguments[0])", server.key)
    driver.refresh()
    wait(driver, lambda d: d.find_elements("css selector", "#voice option"))


def voices(driver):
    """-> {optgroup label: [option values]} of the page's voice list."""
    return driver.execute_script(
        "const groups = {};"
        "for (const g of document.querySelectorAll('#voice optgroup'))"
        "  groups[g.label] = [...g.querySelectorAll('option')].map((o) => o.value);"
        "return groups;"
    )


def speak(driver, text, voice, seed=None, long=False):
    """Type the text, pick the voice, press Speak; wait until the <audio> element holds the audio: -> its WAV bytes."""
    from selenium.webdriver.support.ui import Select

    driver.execute_script("document.getElementById('audio').removeAttribute('src')")
    box = driver.find_element("id", "text")
    box.clear()
    box.send_keys(text)
    Select(driver.find_element("id", "voice")).select_by_value(voice)
    seed_box = driver.find_element("id", "seed")
    seed_box.clear()
    if seed is not None:
        seed_box.send_keys(str(seed))
    if driver.find_element("id", "long").is_selected() != long:
        driver.find_element("id", "long").click()
    driver.find_element("id", "speak").click()
    wait(driver, lambda d: d.execute_script("return document.getElementById('audio').duration > 0"))
    assert driver.find_element("id", "download").is_displayed()
    # the bytes behind the blob: URL that the <audio> element and the download link share
    data = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('audio').src).then((r) => r.blob()).then((b) => {"
        "  const reader = new FileReader(); reader.onload = () => done(reader.result.split(',')[1]);"
        "  reader.readAsDataURL(b); });"
    )
    return base64.b64decode(data)


def listed(server):
    """-> GET /v1/voices's answer."""
    status, _, body = server.request("GET", "/v1/voices")
    assert status == 200, body
    return json.loads(body)


def answer(server, status, **fields):
    """POST /v1/audio/speech with these fields, as the page sends them: -> the body, after checking the status."""
    got, _, body = server.speak(model="tts-1", **fields)
    assert got == status, body
    return body


def samples(wav):
    audio, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 24_000 and audio.ndim == 1
    return audio


# ---- the tests


def test_speak_streams_into_the_audio_element_the_same_samples_as_the_api(browser, server):
    """Type, pick a preset, press Speak: the <audio> element ends up with a duration, and its WAV holds the very
    samples the API gives for the same seed (the page's pcm-to-WAV framing adds or drops nothing)."""
    open_page(browser, server)
    groups = voices(browser)
    assert "v2/en_speaker_6" in [v for names in groups.values() for v in names]
    assert groups["No voice prompt: the seed picks a speaker"] == [listed(server)["random"]]  # the API's name for it
    wav = speak(browser, "Hello from the page.", "v2/en_speaker_6", seed=7)
    expected = answer(server, 200, input="Hello from the page.", voice="v2/en_speaker_6", seed=7, response_format="wav")
    assert len(samples(wav)) > 0
    np.testing.assert_array_equal(samples(wav), samples(expected))
    assert browser.find_element("id", "status").text.endswith("(seed 7)")


def test_a_long_text_plays_before_its_last_segment_arrives(browser, server):
    """Sentence by sentence, three segments: the page schedules the first one's samples to play (its status says
    "playing: ...") before the response's last byte has arrived (the browser's resource timing says when)."""
    from serving import THREE

    open_page(browser, server)
    browser.execute_script(  # every status the page shows, with the time it showed it
        "window.statuses = [];"
        "new MutationObserver(() => statuses.push([performance.now(), document.getElementById('status').textContent]))"
        "  .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true});"
    )
    wav = speak(browser, THREE, "v2/en_speaker_6", long=True)
    statuses = browser.execute_script("return statuses")
    (speech,) = browser.execute_script("return performance.getEntriesByName(new URL('/v1/audio/speech', location))")
    first = min(at for at, status in statuses if status.startswith("playing:"))
    assert first < speech["responseEnd"], (statuses, speech)
    assert statuses[-1][1].startswith(f"done: {len(samples(wav)) / 24_000:.1f} s of audio (seed "), statuses


def test_without_the_key_the_page_says_so_and_takes_one(browser, server):
    """The server has a key: with none stored, the page shows the 401's message and how to fix it; the key typed
    into the field is kept in the browser's storage, so that the next visit needs nothing."""
    browser.get(server.url)
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    from selenium.webdriver.support.ui import WebDriverWait

    error = browser.find_element("id", "error")
    WebDriverWait(browser, HANG).until(lambda d: error.is_displayed())
    assert error.text.endswith("Enter the server's API key below.")
    assert not browser.find_elements("css selector", "#voice option")

    browser.find_element("id", "api-key").send_keys(server.key, "\t")  # the change event: on leaving the field
    wait(browser, lambda d: d.find_elements("css selector", "#voice option"))
    browser.refresh()
    wait(browser, lambda d: d.find_elements("css selector", "#voice option"))
    assert browser.find_element("id", "api-key").get_attribute("value") == server.key


def test_a_cloned_voice_from_a_file_is_listed_and_speaks(browser, server, tmp_path):
    open_page(browser, server)
    sf.write(tmp_path / "me.wav", speech(seconds=4.0, rate=24_000, channels=1), 24_000)
    browser.find_element("id", "clone-name").send_keys("me from a file")
    browser.find_element("id", "clone-file").send_keys(str(tmp_path / "me.wav"))
    browser.find_element("id", "clone-upload").click()
    wait(browser, lambda d: "me from a file" in d.find_element("id", "cloned").text)

    cloned = [v for v in listed(server)["cloned"] if v["name"] == "me from a file"]
    assert len(cloned) == 1
    assert voices(browser)["Cloned"] == [v["id"] for v in listed(server)["cloned"]]
    assert browser.find_element("id", "voice").get_attribute("value") == cloned[0]["id"]  # picked for you
    assert len(samples(speak(browser, "Now in my own voice.", cloned[0]["id"]))) > 0


def test_a_voice_recorded_from_the_microphone_is_cloned_then_deleted(browser, server):
    """Chromium's fake microphone (a beep) stands in for a person: Record, Stop recording, and the page uploads
    the browser's recording as a WAV the server reads (MediaRecorder's own webm it would refuse)."""
    open_page(browser, server)
    before = {v["id"] for v in listed(server)["cloned"]}
    browser.find_element("id", "clone-name").clear()
    browser.find_element("id", "clone-name").send_keys("me on the microphone")
    browser.find_element("id", "record").click()
    wait(browser, lambda d: d.find_element("id", "record").text == "Stop recording")
    browser.execute_script("return new Promise((done) => setTimeout(done, 2000))")  # two seconds of beeps
    browser.find_element("id", "record").click()
    wait(browser, lambda d: "me on the microphone" in d.find_element("id", "cloned").text)
    (new,) = [v for v in listed(server)["cloned"] if v["id"] not in before]
    assert new["name"] == "me on the microphone"

    row = browser.find_element("xpath", f"//ul[@id='cloned']/li[code[text()='{new['id']}']]")
    row.find_element("tag name", "button").click()
    wait(browser, lambda d: new["id"] not in d.find_element("id", "cloned").text)
    assert new["id"] not in {v["id"] for v in listed(server)["cloned"]}
    assert new["id"] not in [v for names in voices(browser).values() for v in names]


def test_the_servers_error_message_is_shown(browser, server):
    """An empty text is refused by the server (400); the page shows the server's own message, and stays usable."""
    open_page(browser, server)
    browser.find_element("id", "text").clear()
    browser.find_element("id", "speak").click()
    from selenium.webdriver.support.ui import WebDriverWait

    error = browser.find_element("id", "error")
    WebDriverWait(browser, HANG).until(lambda d: error.is_displayed())
    assert error.text == json.loads(answer(server, 400, input="", voice="v2/en_speaker_6"))["error"]["message"]
    assert browser.find_element("id", "speak").is_enabled()
