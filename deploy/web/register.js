// The meiduo register page, without a framework. It sends exactly the requests of the original
// meiduo front end (same URLs, query names and JSON body), so either front end works against the
// gateway:
//   GET  /image_codes/{uuid}/                           captcha image (click: new uuid)
//   GET  /usernames/{username}/count/                   on blur
//   GET  /mobiles/{mobile}/count/                       on blur
//   GET  /sms_codes/{mobile}/?text=&image_code_id=      "获取短信验证码", then a 60 s countdown
//   POST /users/  {username, password, password2, mobile, sms_code, allow: "true"}
// Server errors are DRF-shaped: `{"<field>": ["..."]}` goes beside its field, and
// `non_field_errors[0]` or `detail` (429, 503, ...) goes to the message at the top.
"use strict";

(function () {
  const COUNTDOWN_SECONDS = 60;
  const SEND_SMS_LABEL = "获取短信验证码";

  // DRF field name -> the page's error element.
  const FIELD_ERRORS = {
    username: "username-error",
    password: "password-error",
    password2: "password2-error",
    mobile: "mobile-error",
    sms_code: "sms-code-error",
    allow: "allow-error",
    image_code_id: "image-code-error",
    text: "image-code-error",
  };
  const FIELD_INPUTS = {
    username: "username",
    password: "password",
    password2: "password2",
    mobile: "mobile",
    sms_code: "sms-code",
    allow: "allow",
    image_code_id: "image-code",
    text: "image-code",
  };

  // Client-side checks mirror the server's rules and texts (docs/http-contract.md §6); the server
  // stays the authority, these only save a round trip.
  const USERNAME_RE = /^[\p{L}\p{M}\p{Nd}\p{Pc}]{5,20}$/u;
  const MOBILE_RE = /^1[3-9]\d{9}$/;

  const $ = (id) => document.getElementById(id);

  let imageCodeId = null;
  let countdownTimer = null;
  let sending = false;

  // A version-4 UUID. crypto.randomUUID exists only in secure contexts (https, or 127.0.0.1), and
  // the page may be opened over plain http on a LAN address, so build it from getRandomValues.
  function uuid4() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function setFieldError(field, message) {
    const el = $(FIELD_ERRORS[field]);
    if (el) el.textContent = message || "";
    const input = $(FIELD_INPUTS[field]);
    if (input) input.classList.toggle("invalid", Boolean(message));
  }

  function setFormError(message) {
    const el = $("form-error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  // Show a DRF error body: field errors beside their fields, the rest at the top.
  // Returns true if anything was shown.
  function showErrors(status, body) {
    let shown = false;
    if (body && typeof body === "object") {
      for (const [field, messages] of Object.entries(body)) {
        if (!Array.isArray(messages) || messages.length === 0) continue;
        if (field === "non_field_errors") {
          setFormError(String(messages[0]));
          shown = true;
        } else if (FIELD_ERRORS[field]) {
          setFieldError(field, String(messages[0]));
          shown = true;
        }
      }
      if (typeof body.detail === "string") {
        setFormError(body.detail);
        shown = true;
      }
    }
    if (!shown) setFormError(`请求失败（${status}），请稍后重试`);
    return shown;
  }

  // fetch + JSON, tolerant of a non-JSON body (it should never happen: the gateway and the
  // services answer JSON errors, but a proxy in between might not).
  async function request(method, url, body) {
    const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (_) {
      return { status: 0, body: { detail: "网络错误，请检查网络后重试" } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, body: data };
  }

  // --- captcha ---------------------------------------------------------------------------------
  function refreshImageCode() {
    imageCodeId = uuid4();
    $("image-code-img").src = `/image_codes/${imageCodeId}/`;
  }

  // --- checks on blur ---------------------------------------------------------------------------
  // The server reads every field as DRF's CharField does: surrounding whitespace trimmed, then
  // lengths counted in Unicode characters (code points). JavaScript's `.length` counts UTF-16
  // units (an emoji is 2), so count `[...text]` instead, after the same trim.
  const chars = (text) => [...text.trim()].length;

  async function checkUsername() {
    const username = $("username").value.trim();
    if (username === "") {
      setFieldError("username", "该字段不能为空。");
      return false;
    }
    if (!USERNAME_RE.test(username)) {
      setFieldError("username", "仅允许5-20个字符的用户名");
      return false;
    }
    const { status, body } = await request("GET", `/usernames/${encodeURIComponent(username)}/count/`);
    if (status === 200 && body && typeof body.count === "number") {
      setFieldError("username", body.count > 0 ? "已存在一位使用该名字的用户。" : "");
      return body.count === 0;
    }
    if (status === 404) {
      setFieldError("username", "仅允许5-20个字符的用户名");
      return false;
    }
    showErrors(status, body);
    return true; // the server decides at submit time
  }

  function checkPassword() {
    const length = chars($("password").value);
    const ok = length >= 8 && length <= 20;
    setFieldError("password", ok ? "" : length === 0 ? "该字段不能为空。" : "仅允许8-20个字符的密码");
    return ok;
  }

  function checkPassword2() {
    // The server compares the trimmed values.
    const same = $("password2").value.trim() === $("password").value.trim();
    setFieldError("password2", same ? "" : "两次密码不一致");
    return same;
  }

  function checkMobileFormat() {
    const ok = MOBILE_RE.test($("mobile").value);
    setFieldError("mobile", ok ? "" : "手机号格式错误");
    return ok;
  }

  async function checkMobile() {
    if (!checkMobileFormat()) return false;
    const mobile = $("mobile").value;
    const { status, body } = await request("GET", `/mobiles/${mobile}/count/`);
    if (status === 200 && body && typeof body.count === "number") {
      setFieldError("mobile", body.count > 0 ? "具有 手机号 的 用户 已存在。" : "");
      return body.count === 0;
    }
    showErrors(status, body);
    return true;
  }

  function checkImageCode() {
    const ok = $("image-code").value.trim().length === 4;
    setFieldError("text", ok ? "" : "请填写4位图形验证码");
    return ok;
  }

  function checkAllow() {
    const ok = $("allow").checked;
    setFieldError("allow", ok ? "" : "请同意用户协议");
    return ok;
  }

  // --- SMS code ---------------------------------------------------------------------------------
  function startCountdown(seconds) {
    const button = $("send-sms");
    let left = seconds;
    button.disabled = true;
    button.textContent = `${left} 秒后重新发送`;
    clearInterval(countdownTimer);
    countdownTimer = setInterval(() => {
      left -= 1;
      if (left <= 0) {
        clearInterval(countdownTimer);
        countdownTimer = null;
        button.disabled = false;
        button.textContent = SEND_SMS_LABEL;
      } else {
        button.textContent = `${left} 秒后重新发送`;
      }
    }, 1000);
  }

  async function sendSmsCode() {
    if (sending || countdownTimer) return;
    setFormError("");
    const mobileOk = checkMobileFormat();
    const imageOk = checkImageCode();
    if (!mobileOk || !imageOk) return;
    sending = true;
    $("send-sms").disabled = true;
    const mobile = $("mobile").value;
    const text = encodeURIComponent($("image-code").value.trim());
    const url = `/sms_codes/${mobile}/?text=${text}&image_code_id=${imageCodeId}`;
    const { status, body } = await request("GET", url);
    sending = false;
    if (status === 200) {
      setFieldError("sms_code", "");
      startCountdown(COUNTDOWN_SECONDS);
      $("sms-code").focus();
      return;
    }
    $("send-sms").disabled = false;
    showErrors(status, body);
    // The captcha is used up by any check (right or wrong): draw a new one.
    if (status === 400) {
      $("image-code").value = "";
      refreshImageCode();
    }
  }

  // --- register ---------------------------------------------------------------------------------
  async function register(event) {
    event.preventDefault();
    setFormError("");
    const checks = [checkPassword(), checkPassword2(), checkMobileFormat(), checkAllow()];
    const usernameOk = USERNAME_RE.test($("username").value.trim());
    if (!usernameOk) setFieldError("username", "仅允许5-20个字符的用户名");
    if ($("sms-code").value === "") setFieldError("sms_code", "该字段不能为空。");
    if (!usernameOk || checks.includes(false) || $("sms-code").value === "") return;

    const submit = $("submit");
    submit.disabled = true;
    const { status, body } = await request("POST", "/users/", {
      username: $("username").value,
      password: $("password").value,
      password2: $("password2").value,
      mobile: $("mobile").value,
      sms_code: $("sms-code").value,
      allow: $("allow").checked.toString(),
    });
    submit.disabled = false;
    if (status === 201 && body && body.token) {
      // What the meiduo front end keeps after registering.
      try {
        sessionStorage.clear();
        localStorage.token = body.token;
        localStorage.user_id = String(body.id);
        localStorage.username = body.username;
      } catch (_) {
        // Storage disabled: the account exists anyway; the person logs in later.
      }
      $("success-username").textContent = body.username;
      $("register-form").hidden = true;
      $("success").hidden = false;
      document.title = "美多商城 - 注册成功";
      return;
    }
    showErrors(status, body);
  }

  // Editing a field clears its own message, and the top message, which was about the last try.
  function clearOnInput(field) {
    $(FIELD_INPUTS[field]).addEventListener("input", () => {
      setFieldError(field, "");
      setFormError("");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("image-code-img").addEventListener("click", refreshImageCode);
    $("username").addEventListener("blur", checkUsername);
    $("password").addEventListener("blur", checkPassword);
    $("password2").addEventListener("blur", checkPassword2);
    $("mobile").addEventListener("blur", checkMobile);
    $("image-code").addEventListener("blur", () => {
      if ($("image-code").value !== "") checkImageCode();
    });
    $("allow").addEventListener("change", checkAllow);
    $("send-sms").addEventListener("click", sendSmsCode);
    $("register-form").addEventListener("submit", register);
    ["username", "password", "password2", "mobile", "sms_code", "text"].forEach(clearOnInput);
    refreshImageCode();
  });
})();
