// Package web holds the sign-in pages of the authorization server: their
// templates, style sheet and logo, and every string they show (Text), so
// that a translation is one more Text value.
package web

import "embed"

// FS holds the built-in templates (login.html, consent.html, error.html,
// logout.html, loggedout.html and layout.html), style.css and logo.svg.
//
//go:embed *.html style.css logo.svg
var FS embed.FS
