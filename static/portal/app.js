// Portal-wide behaviour. No inline scripts anywhere (Content-Security-Policy).
(function () {
  "use strict";
  // Show times in the browser's own zone: the server reads this cookie.
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && document.cookie.indexOf("tz=" + tz) === -1) {
      document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* old browser: UTC it is */ }
})();
