package signer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/atomicfile"
)

// TokenStore holds the one-time bootstrap tokens of the new masters. Only a
// SHA-256 of each token is kept, so the store (and its file on the survivor)
// cannot be used to impersonate a master.
type TokenStore struct {
	mu     sync.Mutex
	path   string
	Tokens map[string]*TokenRecord `json:"tokens"`
}

// TokenRecord is one member's token.
type TokenRecord struct {
	// Hash is the hex SHA-256 of the token.
	Hash string `json:"hash"`
	// Expires is when the token stops being accepted.
	Expires time.Time `json:"expires"`
	// Used is when certificates were issued for it; a used token is refused
	// unless the request carries the very same public keys (a retry after a
	// lost response), which only the first requester holds.
	Used *time.Time `json:"used,omitempty"`
	// KeysHash identifies the public keys certificates were issued for.
	KeysHash string `json:"keysHash,omitempty"`
}

// Token errors; the signer returns them to the client as the 403 reason.
var (
	ErrTokenUnknown = errors.New("no bootstrap token is issued for this member")
	ErrTokenWrong   = errors.New("wrong bootstrap token")
	ErrTokenExpired = errors.New("bootstrap token expired: " + newTokensHint)
	ErrTokenUsed    = errors.New("bootstrap token already used (tokens are single-use)")
)

// newTokensHint says how to replace expired tokens: the command that makes
// them and how the signer picks them up.
const newTokensHint = "generate new ones on the restored master with `etcd-rescue signer tokens --plan PLAN --store " +
	"TOKEN-STORE --out tokens.txt`, start the signer again with --token-store TOKEN-STORE, and give each new master its new token"

// checkIssuable refuses a store that leaves masters waiting for
// certificates with no token the signer would accept: none at all while the
// plan has members to join, or every unused token expired. A store whose
// tokens were all used passes: the signer still adds and promotes members.
func (s *TokenStore) checkIssuable(joiners int, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	where := "the token store"
	if s.path != "" {
		where = "token store " + s.path
	}
	if len(s.Tokens) == 0 {
		if joiners == 0 {
			return nil
		}
		return fmt.Errorf("%s holds no bootstrap tokens, so none of the plan's %d new masters could join: %s", where, joiners, newTokensHint)
	}
	unused := 0
	var latest time.Time
	for _, r := range s.Tokens {
		if r.Used != nil {
			continue
		}
		unused++
		if now.Before(r.Expires) {
			return nil
		}
		if r.Expires.After(latest) {
			latest = r.Expires
		}
	}
	if unused == 0 {
		return nil
	}
	return fmt.Errorf("every unused bootstrap token in %s expired (the last at %s), so every new master would be refused: %s",
		where, latest.UTC().Format(time.RFC3339), newTokensHint)
}

// NewTokens generates a random token for each name, valid until expires. It
// returns the tokens in clear (to hand to the new masters) and the store of
// their hashes (for the signer).
func NewTokens(names []string, expires time.Time) (map[string]string, *TokenStore, error) {
	plain := map[string]string{}
	st := &TokenStore{Tokens: map[string]*TokenRecord{}}
	for _, n := range names {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, err
		}
		tok := base64.RawURLEncoding.EncodeToString(b)
		plain[n] = tok
		st.Tokens[n] = &TokenRecord{Hash: hashToken(tok), Expires: expires.UTC()}
	}
	return plain, st, nil
}

func hashToken(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// LoadTokens reads a token store written by Save.
func LoadTokens(path string) (*TokenStore, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := &TokenStore{path: path}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("token store %s is damaged (%v): move it aside and generate new tokens", path, err)
	}
	if st.Tokens == nil {
		st.Tokens = map[string]*TokenRecord{}
	}
	return st, nil
}

// Save writes the store (0600) and remembers the path, so that consuming a
// token is persisted and survives a signer restart.
func (s *TokenStore) Save(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.path = path
	return s.saveLocked()
}

func (s *TokenStore) saveLocked() error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, append(b, '\n'), 0o600)
}

// check verifies a token without consuming it. reissue is true for a used
// token presented again with the same keys.
func (s *TokenStore) check(name, token, keysHash string, now time.Time) (reissue bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A name without a token is answered like a wrong token, after the same
	// comparison: the answer does not tell which names have one.
	r := s.Tokens[name]
	known := r != nil
	if !known {
		r = &TokenRecord{Hash: strings.Repeat("0", sha256.Size*2)}
	}
	if subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(r.Hash)) != 1 || token == "" || !known {
		return false, ErrTokenWrong
	}
	if !now.Before(r.Expires) {
		return false, ErrTokenExpired
	}
	if r.Used != nil {
		if r.KeysHash != "" && subtle.ConstantTimeCompare([]byte(r.KeysHash), []byte(keysHash)) == 1 {
			return true, nil
		}
		return false, ErrTokenUsed
	}
	return false, nil
}

// consume marks a token used for the given keys and persists the store.
func (s *TokenStore) consume(name, keysHash string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.Tokens[name]
	if r == nil {
		return ErrTokenUnknown
	}
	if r.Used != nil {
		return nil
	}
	t := now.UTC()
	r.Used, r.KeysHash = &t, keysHash
	if err := s.saveLocked(); err != nil {
		r.Used, r.KeysHash = nil, ""
		return fmt.Errorf("record used token: %w", err)
	}
	return nil
}

// WriteTokenFile writes tokens in clear, one "name token" line each, to a
// 0600 file: the operator's copy, and what the Ignition generator embeds.
func WriteTokenFile(path string, plain map[string]string) error {
	var names []string
	for n := range plain {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# etcd-rescue bootstrap tokens: one-time, secret; give each master only its own line\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n, plain[n])
	}
	return atomicfile.WriteFile(path, []byte(b.String()), 0o600)
}

// ReadToken returns a member's token from a token file. The file may also
// hold just the token itself (what a master's Ignition config carries).
func ReadToken(path, name string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 1 && !strings.Contains(lines[0], " ") {
		return lines[0], nil
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("token file %s has no token for %s", path, name)
}
