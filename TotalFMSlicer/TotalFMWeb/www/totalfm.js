// Uploads from the review page: the chosen files go to the server's /upload route in one
// multipart request (streamed to the session's private folder, size-limited there).
window.trame.utils.totalfm = {
  async upload(kind, input) {
    const files = Array.from(input.files || []);
    if (!files.length) {
      return { ok: false, text: "no file chosen" };
    }
    const form = new FormData();
    for (const file of files) {
      form.append("file", file, file.name);
    }
    try {
      const reply = await fetch("upload?kind=" + encodeURIComponent(kind), {
        method: "POST", body: form, credentials: "same-origin",
      });
      return { ok: reply.ok, text: await reply.text() };
    } catch (e) {
      return { ok: false, text: "upload failed: " + e };
    } finally {
      input.value = "";
    }
  },
};
