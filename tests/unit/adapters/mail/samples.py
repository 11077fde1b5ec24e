"""Invented returned mail in the shapes of common MTAs and mailbox providers (not real mail)."""

from __future__ import annotations

from typing import Final

POSTFIX_DSN: Final = b"""\
From: MAILER-DAEMON@mx.sender.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {return_path}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Message-Id: <20260101.AB12@mx.sender.example>
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

<gone@example.org>: host mx.example.org[192.0.2.7] said: 550 5.1.1 <gone@example.org>:
    Recipient address rejected: User unknown in virtual mailbox table

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.sender.example
X-Postfix-Queue-ID: AB12

Final-Recipient: rfc822; gone@example.org
Original-Recipient: rfc822;gone@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected:
    User unknown in virtual mailbox table

--B1
Content-Type: text/rfc822-headers

Return-Path: <{return_path}>
From: news@sender.example
To: gone@example.org
Subject: Spring sale
Message-ID: <orig-1@sender.example>
X-Campaign-ID: spring
X-Tenant-ID: acme

--B1--
"""

EXIM_BOUNCE: Final = b"""\
From: Mail Delivery System <Mailer-Daemon@mx.exim.example>
To: news@sender.example
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied
X-Failed-Recipients: bob@example.net
Message-Id: <E1abc-0001@mx.exim.example>

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bob@example.net
    host mx.example.net [198.51.100.3]
    SMTP error from remote mail server after RCPT TO:<bob@example.net>:
    550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

Return-path: <news@sender.example>
X-Campaign-ID: autumn
X-Tenant-ID: acme
Subject: Autumn
"""

EXCHANGE_DSN: Final = b"""\
From: postmaster@contoso.example
To: news@sender.example
Subject: Undeliverable: Spring sale
X-MS-Exchange-Message-Is-Ndr:
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="EX"

--EX
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups:
carol@contoso.example
The email address you entered couldn't be found.

--EX
Content-Type: message/delivery-status

Reporting-MTA: dns;EX01.contoso.example

Final-recipient: RFC822; carol@contoso.example
Action: failed
Status: 5.1.10
Diagnostic-code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by
 SMTP address lookup

--EX
Content-Type: message/rfc822

From: news@sender.example
To: carol@contoso.example
Subject: Spring sale
X-Campaign-ID: spring
X-Tenant-ID: acme

Hello
--EX--
"""

GMAIL_DSN: Final = b"""\
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: news@sender.example
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="G1"; report-type=delivery-status

--G1
Content-Type: text/plain; charset="UTF-8"

Address not found. Your message wasn't delivered to dave@gmail.example.

--G1
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com

Final-Recipient: rfc822; dave@gmail.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does
 not exist. Please try double-checking the recipient's email address for typos or
 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser

Final-Recipient: rfc822; erin@gmail.example
Action: failed
Status: 4.2.2
Diagnostic-Code: smtp; 452-4.2.2 The recipient's inbox is out of storage space.

--G1
Content-Type: text/rfc822-headers

X-Campaign-ID: spring
X-Tenant-ID: acme

--G1--
"""

VACATION: Final = b"""\
From: Frank <frank@example.com>
To: news@sender.example
Subject: Out of Office: Spring sale
Auto-Submitted: auto-replied

I am away until Monday.
"""

VACATION_WITHOUT_HEADER: Final = b"""\
From: Grace <grace@example.com>
To: news@sender.example
Subject: Automatic reply: Spring sale
X-Autoreply: yes

I am on leave. Mail user unknown will not reach me either.
"""

PLAIN_MAIL: Final = b"""\
From: Heidi <heidi@example.com>
To: news@sender.example
Subject: Re: Spring sale

Thanks, but please send the catalogue.
"""

ARF_WITH_VERP: Final = b"""\
From: fbl@isp.example
To: fbl@sender.example
Subject: FW: Spring sale
MIME-Version: 1.0
Message-ID: <fbl-1@isp.example>
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

An abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/1.0
Version: 1
Original-Mail-From: <{return_path}>
Original-Rcpt-To: <ivan@isp.example>
Arrival-Date: {arrival}

--F
Content-Type: text/rfc822-headers

From: news@sender.example
To: ivan@isp.example
Subject: Spring sale

--F--
"""

ARF_NOT_SPAM: Final = ARF_WITH_VERP.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
