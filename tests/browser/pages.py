"""Browser steps that wait for the page they expect, never for a fixed time.

A click that loads a page leaves the old document behind: reading it straight after the
click races the navigation (the element goes stale, or the old page is read). Every step
therefore waits for the old page to go stale, then for the new one to finish loading and
show a marker.

    heading = click_to_page(browser, button, expect="h1", text="Approve?")
"""

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30  # seconds: a loaded shared machine, not a slow page


def wait_until(browser: WebDriver, condition, *, what: str, timeout: float = TIMEOUT):
    """Polls a Selenium condition; fails with `what` after `timeout` seconds."""
    return WebDriverWait(browser, timeout).until(
        condition, message=f"timed out after {timeout}s waiting for {what}"
    )


def page_marker(browser: WebDriver, expect: str, text: str | None = None) -> WebElement:
    """The visible element matching CSS `expect` (containing `text`, if given)."""
    locator = (By.CSS_SELECTOR, expect)
    if text is not None:
        wait_until(
            browser,
            EC.text_to_be_present_in_element(locator, text),
            what=f"{expect!r} to show {text!r}",
        )
    return wait_until(browser, EC.visibility_of_element_located(locator), what=expect)


def click_to_page(
    browser: WebDriver, element: WebElement, *, expect: str, text: str | None = None
) -> WebElement:
    """Clicks `element`, which loads another page, and returns that page's marker."""
    old_page = browser.find_element(By.TAG_NAME, "html")
    label = _label(element)
    element.click()
    return _next_page(browser, old_page, label, expect=expect, text=text)


def open_page(browser: WebDriver, url: str, *, expect: str, text: str | None = None) -> WebElement:
    """Loads `url` and returns its marker."""
    browser.get(url)
    return page_marker(browser, expect, text)


def click_confirm_to_page(
    browser: WebDriver, element: WebElement, *, expect: str, text: str | None = None
) -> WebElement:
    """Clicks `element`, accepts the confirmation dialog it opens, and returns the marker of
    the page the confirmed form loads."""
    old_page = browser.find_element(By.TAG_NAME, "html")
    label = _label(element)
    element.click()
    dialog = wait_until(browser, EC.alert_is_present(), what=f"the confirmation of {label!r}")
    dialog.accept()
    return _next_page(browser, old_page, label, expect=expect, text=text)


def _gone(old_page: WebElement):
    """Selenium's staleness_of, plus the answer ChromeDriver gives for a node of a document
    that is being replaced ("does not belong to the document"): that page is gone too."""

    def check(_browser) -> bool:
        try:
            old_page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in (error.msg or ""):
                return True
            raise
        return False

    return check


def _label(element: WebElement) -> str:
    return element.get_attribute("value") or element.text or element.tag_name


def _next_page(
    browser: WebDriver, old_page: WebElement, label: str, *, expect: str, text: str | None
) -> WebElement:
    """The old page gone stale, the new one loaded, its marker."""
    wait_until(browser, _gone(old_page), what=f"the page to change after {label!r}")
    wait_until(
        browser,
        lambda b: b.execute_script("return document.readyState") == "complete",
        what=f"the page after {label!r} to finish loading",
    )
    return page_marker(browser, expect, text)


def current_code(username: str) -> str:
    """The code an authenticator app shows now for the user's confirmed TOTP device."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__username=username, confirmed=True)
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def sign_in(
    browser: WebDriver, base_url: str, *, username: str, password: str, next_url: str, expect: str
) -> WebElement:
    """Signs a staff member in through the admin's login page (and, for staff who may move
    money, its two-factor step with the code of their device) and returns the marker of the
    page `next_url` leads to. Every browser test signs in here, so a change to how staff
    sign in is made once."""
    open_page(browser, f"{base_url}/admin/login/?next={next_url}", expect="#id_username")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(password)
    login = browser.find_element(By.CSS_SELECTOR, 'input[type="submit"]')
    marker = click_to_page(browser, login, expect=f"{expect}, #id_otp_token")
    if marker.get_attribute("id") != "id_otp_token":
        return marker
    marker.send_keys(current_code(username))
    verify = browser.find_element(By.CSS_SELECTOR, 'input[value="Verify"]')
    return click_to_page(browser, verify, expect=expect)
