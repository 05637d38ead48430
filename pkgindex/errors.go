package pkgindex

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/dragonfly-fleet/fleet/clip"
)

// NotFoundError reports that the index has no such project, no file of the
// pinned version, or no release eligible as the latest.
type NotFoundError struct {
	// Project is the normalized project name.
	Project string
	// Version is the pinned version, "" when the latest was asked for.
	Version string
	// Reason says what was missing.
	Reason string
}

func (e *NotFoundError) Error() string {
	if e.Version == "" {
		return fmt.Sprintf("%s: %s", e.Project, e.Reason)
	}
	return fmt.Sprintf("%s==%s: %s", e.Project, e.Version, e.Reason)
}

// StatusError reports an index answer other than 200 OK (or 404, which is
// a NotFoundError).
type StatusError struct {
	// URL is the page asked for.
	URL  string
	Code int
}

func (e *StatusError) Error() string {
	text := "HTTP " + strconv.Itoa(e.Code)
	if t := http.StatusText(e.Code); t != "" {
		text += " " + t
	}
	return fmt.Sprintf("index answered %s for %s", text, clip.String(e.URL, clip.Default))
}

// LimitError reports an index answer beyond Config.MaxPageSize or
// Config.MaxFiles.
type LimitError struct {
	// URL is the page asked for.
	URL string
	// Bound names the Config field: "MaxPageSize" (bytes) or "MaxFiles".
	Bound string
	Max   int64
}

func (e *LimitError) Error() string {
	if e.Bound == "MaxFiles" {
		return fmt.Sprintf("index page %s lists more than %d files (pkgindex MaxFiles)", clip.String(e.URL, clip.Default), e.Max)
	}
	return fmt.Sprintf("index page %s is larger than %d bytes (pkgindex MaxPageSize)", clip.String(e.URL, clip.Default), e.Max)
}

// PageError reports an index answer that could not be read (malformed
// JSON, an unsupported API version, a file entry without a valid URL).
type PageError struct {
	// URL is the page asked for.
	URL string
	Err error
}

func (e *PageError) Error() string {
	return fmt.Sprintf("index page %s: %v", clip.String(e.URL, clip.Default), e.Err)
}

func (e *PageError) Unwrap() error { return e.Err }

// DigestError reports a distribution that cannot be verified: the index
// gives no sha256 for it or an invalid one (Got is ""), or the downloaded
// bytes have another digest. The target must fail (the scan exits 3).
type DigestError struct {
	Filename string
	// Want is the index's sha256 (lower-case hex as published, cut to a
	// few hundred bytes); "" when the index gives none.
	Want string
	// Got is the sha256 of the downloaded bytes; "" when nothing was
	// downloaded because Want is missing or invalid.
	Got string
	// PipChecks, when Want is "", names the algorithm of the digest pip
	// checks instead of a sha256 (see Distribution.PipChecks).
	PipChecks string
}

func (e *DigestError) Error() string {
	name := clip.String(e.Filename, clip.Default)
	switch {
	case e.Want == "" && e.PipChecks != "":
		return fmt.Sprintf("distribution %q: pip checks the download against the index's %q digest, not a sha256, so the scan cannot vouch that pip installs the bytes it scans",
			name, clip.String(e.PipChecks, 64))
	case e.Want == "":
		return fmt.Sprintf("distribution %q: the index gives no sha256, so the download cannot be verified", name)
	case e.Got == "":
		return fmt.Sprintf("distribution %q: the index gives an invalid sha256 %q", name, e.Want)
	}
	return fmt.Sprintf("distribution %q: sha256 mismatch: index says %s, downloaded %s", name, e.Want, e.Got)
}
