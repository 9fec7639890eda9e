// phigate console: the one script. Everything works without it; it only
// adds the copy button of a secret shown once.
'use strict';
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('button[data-copy]').forEach(function (btn) {
    var field = document.getElementById(btn.getAttribute('data-copy'));
    if (!field) { return; }
    btn.hidden = false;
    btn.addEventListener('click', function () {
      field.select();
      var done = function () { btn.textContent = 'Copied'; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          btn.textContent = 'Select the text and copy it';
        });
      } else {
        btn.textContent = 'Select the text and copy it';
      }
    });
  });
});
