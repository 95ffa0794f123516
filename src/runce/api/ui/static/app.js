// runce dashboard: keeps the states and progress of the runs and once tasks on a page
// current by asking the server every few seconds (no reload), and asks before cancelling.
// Whatever the server sends is set as text (textContent), never as markup.
(function () {
  "use strict";

  var EVERY = 1500; // milliseconds between two looks

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function show(root, run) {
    var state = field(root, "state");
    if (state && state.textContent !== run.state) {
      state.textContent = run.state;
      state.className = "state state-" + run.state;
    }
    var bar = field(root, "progress-bar");
    var percent = field(root, "progress");
    if (run.progress !== null && bar && percent) {
      bar.hidden = false;
      bar.value = run.progress;
      bar.textContent = run.progress + "%";
      percent.textContent = run.progress + "%";
    }
    var message = field(root, "progress-message");
    if (message) {
      message.textContent = run.progress_message || "";
    }
    var attempt = field(root, "attempt");
    if (attempt) {
      attempt.textContent = run.attempt + "/" + run.max_attempts;
    }
    var cancel = field(root, "cancel");
    if (cancel) {
      cancel.hidden = !(run.cancel_requested && !run.finished);
    }
    var error = document.querySelector('[data-field="error"]');
    if (error && root.classList.contains("run")) {
      error.textContent = run.error || "\u2014";
    }
    root.querySelectorAll("form[data-when]").forEach(function (form) {
      form.hidden = form.getAttribute("data-when").split(" ").indexOf(run.state) < 0;
    });
    if (root.classList.contains("run")) {
      showDetails(root, run);
    }
  }

  function setText(node, text) {
    if (node && node.textContent !== text) {
      node.textContent = text;
    }
  }

  // A run's own page: who ran it and when, and once it succeeded its result and output.
  function showDetails(root, run) {
    setText(field(root, "worker"), run.worker || "\u2014");
    setText(field(root, "started"), run.started_at);
    setText(field(root, "finished"), run.finished_at);
    var outcome = document.querySelector('[data-field="outcome"]');
    if (!outcome) {
      return;
    }
    if (run.state !== "succeeded") {
      outcome.hidden = true;
      return;
    }
    if (run.result === null) {
      return; // not asked for: the page shows it already
    }
    setText(field(outcome, "result"), run.result);
    var ref = field(outcome, "output-ref");
    setText(ref, run.output_ref || "");
    ref.parentNode.hidden = !run.output_ref;
    outcome.hidden = false;
  }

  function showTask(row, task) {
    var state = field(row, "state");
    if (state && state.textContent !== task.state) {
      state.textContent = task.state;
      state.className = "state state-" + task.state.toLowerCase();
    }
    var requested = field(row, "requested");
    if (requested) {
      requested.textContent = task.requested ? task.requested + " asked" : "";
      requested.hidden = !(task.requested && task.state === "RUNNING");
    }
    var text = field(row, "progress");
    var bar = field(row, "progress-bar");
    var shown = task.progress_text !== null && task.state !== "APPLIED" && task.state !== "SKIPPED";
    if (text && shown) {
      text.textContent = task.progress_text;
      text.parentNode.hidden = false;
    } else if (text && text.parentNode.classList.contains("backfill")) {
      text.parentNode.hidden = true; // applied: its progress is history
    }
    if (bar && shown) {
      bar.hidden = task.percent === null;
      bar.value = task.percent || 0;
      bar.textContent = (task.percent || 0) + "%";
    }
    row.querySelectorAll("form[data-action]").forEach(function (form) {
      form.hidden = task.actions.indexOf(form.getAttribute("data-action")) < 0;
    });
  }

  function followTasks(table) {
    function look() {
      if (document.hidden) {
        setTimeout(look, EVERY);
        return;
      }
      fetch(table.getAttribute("data-live-tasks"), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (answer) {
          if (!answer.ok) {
            throw new Error("the dashboard answered " + answer.status);
          }
          return answer.json();
        })
        .then(function (body) {
          body.tasks.forEach(function (task) {
            var row = table.querySelector('tr[data-task-id="' + CSS.escape(task.id) + '"]');
            if (row) {
              showTask(row, task);
            }
          });
          setTimeout(look, EVERY);
        })
        .catch(function () {
          setTimeout(look, EVERY * 4);
        });
    }
    setTimeout(look, EVERY);
  }

  function follow(root, where, many) {
    function look() {
      if (document.hidden) {
        setTimeout(look, EVERY);
        return;
      }
      fetch(where(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (answer) {
          if (!answer.ok) {
            throw new Error("the dashboard answered " + answer.status);
          }
          return answer.json();
        })
        .then(function (body) {
          body.runs.forEach(function (run) {
            var target = many ? root.querySelector('tr[data-run-id="' + CSS.escape(run.id) + '"]') : root;
            if (target) {
              show(target, run);
            }
          });
          var known = root.getAttribute("data-attempts");
          if (!many && known !== null && String(body.attempts) !== known) {
            var note = field(root, "reload");
            if (note) {
              note.hidden = false;
            }
          }
          setTimeout(look, EVERY);
        })
        .catch(function () {
          setTimeout(look, EVERY * 4); // the server is away or the session ended: slower
        });
    }
    setTimeout(look, EVERY);
  }

  function start() {
    var table = document.querySelector("table[data-live]");
    if (table) {
      var ids = Array.prototype.map.call(table.querySelectorAll("tr[data-run-id]"), function (row) {
        return "id=" + encodeURIComponent(row.getAttribute("data-run-id"));
      });
      var url = table.getAttribute("data-live") + "?" + ids.join("&");
      follow(table, function () {
        return url;
      }, true);
    }
    var run = document.querySelector("section.run[data-live]");
    if (run) {
      follow(run, function () {
        // The result is asked for only while the page does not show one (it may be large).
        var outcome = document.querySelector('[data-field="outcome"]');
        return run.getAttribute("data-live") + (outcome && outcome.hidden ? "?result=true" : "");
      }, false);
    }
    var tasks = document.querySelector("table[data-live-tasks]");
    if (tasks) {
      followTasks(tasks);
    }
    document.querySelectorAll("button.danger").forEach(function (button) {
      button.form.addEventListener("submit", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm") || "Cancel this run?")) {
          event.preventDefault();
        }
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
