// Package omq speaks OxenMQ's messaging layer over ZMTP (package zmtp):
// the protocol Session service nodes and oxend use between themselves.
//
//   - a request is [command, reply-tag, data…], answered with
//     ["REPLY", reply-tag, data…];
//   - a plain command is [command, data…], never answered;
//   - "HI" is answered "HELLO" (a client's check that the server is up);
//   - refusals are [error, command] or, for a request, [error, "REPLY",
//     reply-tag]: UNKNOWNCOMMAND, FORBIDDEN (auth level too low),
//     NOT_A_SERVICE_NODE (the command needs this node to be a service node),
//     FORBIDDEN_SN (it needs the caller to be one), NO_REPLY_TAG.
//
// Commands are "category.name"; each category has an access level (public,
// basic, admin) and may require a service-node caller (checked against the
// active set by the caller's CURVE key).
package omq

import (
	"errors"
	"fmt"
	"strings"
)

// AuthLevel is what a connection may call.
type AuthLevel int

const (
	AuthNone AuthLevel = iota
	AuthBasic
	AuthAdmin
)

func (a AuthLevel) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthBasic:
		return "basic"
	case AuthAdmin:
		return "admin"
	}
	return fmt.Sprintf("auth(%d)", int(a))
}

// Access is a category's requirement.
type Access struct {
	Auth     AuthLevel
	RemoteSN bool // the caller must be an active service node
	LocalSN  bool // this node must be running as a service node
}

// Error replies.
const (
	ErrUnknownCommand   = "UNKNOWNCOMMAND"
	ErrForbidden        = "FORBIDDEN"
	ErrNotAServiceNode  = "NOT_A_SERVICE_NODE"
	ErrForbiddenSN      = "FORBIDDEN_SN"
	ErrNoReplyTag       = "NO_REPLY_TAG"
	cmdReply            = "REPLY"
	cmdHi, cmdHello     = "HI", "HELLO"
	maxCommandNameBytes = 200
)

// RemoteError is a refusal from the other side.
type RemoteError struct {
	Code    string // UNKNOWNCOMMAND, FORBIDDEN, …
	Command string
}

func (e *RemoteError) Error() string {
	if e.Command == "" {
		return "omq: " + e.Code
	}
	return "omq: " + e.Code + " for " + e.Command
}

func isErrorReply(cmd string) bool {
	switch cmd {
	case ErrUnknownCommand, ErrForbidden, ErrNotAServiceNode, ErrForbiddenSN, ErrNoReplyTag:
		return true
	}
	return false
}

// ErrTimeout is a request that got no reply in time.
var ErrTimeout = errors.New("omq: request timed out")

// splitCommand reads "category.name".
func splitCommand(cmd string) (cat, name string, ok bool) {
	cat, name, ok = strings.Cut(cmd, ".")
	return cat, name, ok && cat != "" && name != "" && len(cmd) <= maxCommandNameBytes
}
