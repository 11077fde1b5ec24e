"""The bounce and feedback mail front door: an SMTP and LMTP listener publishing events.

`sendguard mail` runs it; docs/MAIL.md describes the VERP scheme and the SMTP answers.
"""

from __future__ import annotations

from processor.mail.listener import MailHandler, MailServers, mail_attribution, run_mail, serve_mail

__all__ = ["MailHandler", "MailServers", "mail_attribution", "run_mail", "serve_mail"]
