package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// smtpConfig is where endpoint alerts are mailed from; Addr empty disables email.
type smtpConfig struct {
	Addr     string // host:port
	From     string
	Username string
	Password string
}

// mailer sends alert emails without blocking its callers: at most a few in flight, extra ones dropped
// with a log line (an alert storm must not pile up goroutines).
type mailer struct {
	cfg  smtpConfig
	log  *slog.Logger
	sem  chan struct{}
	send func(addr string, a smtp.Auth, from string, to []string, msg []byte) error
}

func newMailer(cfg smtpConfig, log *slog.Logger) *mailer {
	return &mailer{cfg: cfg, log: log, sem: make(chan struct{}, 4), send: smtp.SendMail}
}

// endpointDisabled mails the endpoint's support address, if both it and SMTP are configured.
func (m *mailer) endpointDisabled(ep *model.Endpoint, reason string) {
	if m.cfg.Addr == "" || ep == nil || ep.SupportEmail == "" {
		return
	}
	select {
	case m.sem <- struct{}{}:
	default:
		m.log.Warn("alert email dropped: too many in flight", "endpoint", ep.UID)
		return
	}
	go func() {
		defer func() { <-m.sem }()
		subject := fmt.Sprintf("Sluice: endpoint %s was disabled", ep.Name)
		body := fmt.Sprintf("Your webhook endpoint %s (%s, id %s) was disabled at %s because %s.\r\n\r\n"+
			"Pending deliveries are kept. Fix the endpoint, then activate it to resume delivery.\r\n",
			ep.Name, ep.URL, ep.UID, time.Now().UTC().Format(time.RFC3339), reason)
		msg := []byte("From: " + m.cfg.From + "\r\nTo: " + ep.SupportEmail + "\r\nSubject: " + subject +
			"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
		var auth smtp.Auth
		if m.cfg.Username != "" {
			host, _, _ := net.SplitHostPort(m.cfg.Addr)
			auth = smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, host)
		}
		if err := m.send(m.cfg.Addr, auth, m.cfg.From, []string{ep.SupportEmail}, msg); err != nil {
			m.log.Warn("send alert email", "endpoint", ep.UID, "to", ep.SupportEmail, "err", err)
			return
		}
		m.log.Info("alert email sent", "endpoint", ep.UID, "to", ep.SupportEmail)
	}()
}

// validEmailHeader keeps header injection out of configured addresses.
func validEmailHeader(s string) bool { return !strings.ContainsAny(s, "\r\n") }
