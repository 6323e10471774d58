package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// DefaultExtractBudget bounds what a static resources tarball may expand
// to. Real ones hold a few megabytes of certificates and configs.
const DefaultExtractBudget = 2 << 30

// DefaultMaxEntries bounds a tarball's entries. A master's static pod
// resources hold a few hundred files, a few thousand with every revision.
const DefaultMaxEntries = 20000

// TarInfo summarizes a checked tarball.
type TarInfo struct {
	Path    string
	Entries int
	Bytes   int64
	// TopDirs are the first path elements of the entries.
	TopDirs []string
	// Snapshot is the name of the snapshot entry of a single-file backup.
	Snapshot string
	// Files are the entries other than the snapshot, bodies included, when
	// the walk kept them (StageTarball, up to KeepFilesLimit bytes): the
	// restore extracts the static resources from them instead of reading
	// the whole tarball, snapshot and all, through gzip again. Nil when
	// not kept.
	Files []TarFile `json:"-"`
}

// TarFile is a tarball entry kept in memory.
type TarFile struct {
	Header *tar.Header
	Body   []byte
}

// KeepFilesLimit bounds the entries StageTarball keeps in memory: a
// master's static resources are a few megabytes; past the limit none are
// kept and the restore reads them from the tarball.
const KeepFilesLimit = 64 << 20

// TarCheck tunes CheckTarball.
type TarCheck struct {
	// Budget is the most the entries may expand to; 0 means DefaultExtractBudget.
	Budget int64
	// MaxEntries is the most entries it may hold; 0 means DefaultMaxEntries.
	MaxEntries int
	// Single expects exactly one snapshot (*.db) entry at the top.
	Single bool
}

// CheckTarball reads a .tar.gz to its end and refuses anything that could
// write outside the folder it is extracted into or that a master's static
// resources never contain: absolute paths, "..", links that leave the
// folder, device nodes and fifos, entries past the size budget, and more
// entries than MaxEntries. It stops promptly when ctx is canceled.
//
// A single-file backup's snapshot entry does not count against the budget:
// it is not extracted with the resources but staged into the data dir,
// whose free space the restore checks.
func CheckTarball(ctx context.Context, p string, c TarCheck) (*TarInfo, error) {
	return checkTarball(ctx, p, c, tarHooks{})
}

// tarHooks are what StageTarball's one pass does besides CheckTarball's
// checks.
type tarHooks struct {
	// read, if set, is told the bytes of each read of the compressed file.
	read func(int64)
	// snapshot, if set (with TarCheck.Single), is given the snapshot
	// entry's body to read.
	snapshot func(*tar.Header, io.Reader) error
	// keepFiles keeps the other entries in TarInfo.Files.
	keepFiles bool
}

// checkTarball is CheckTarball, with hooks.
func checkTarball(ctx context.Context, p string, c TarCheck, hooks tarHooks) (*TarInfo, error) {
	info := &TarInfo{Path: p}
	var kept int64
	keep := func(h *tar.Header, r io.Reader) error {
		if !hooks.keepFiles || kept < 0 {
			return nil
		}
		if kept += h.Size; kept > KeepFilesLimit {
			info.Files, kept = nil, -1 // too many to keep: the restore reads the tarball
			return nil
		}
		body, err := io.ReadAll(io.LimitReader(r, h.Size))
		if err != nil {
			return err
		}
		hc := *h
		info.Files = append(info.Files, TarFile{Header: &hc, Body: body})
		return nil
	}
	budget := c.Budget
	if budget == 0 {
		budget = DefaultExtractBudget
	}
	maxEntries := c.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMaxEntries
	}
	err := walkTar(ctx, p, hooks.read, func(h *tar.Header, r io.Reader) error {
		if err := checkEntry(h); err != nil {
			return err
		}
		info.Entries++
		if info.Entries > maxEntries {
			return fmt.Errorf("more than %d entries (at %q): refused (a real static resources tarball has a few thousand at most); is this the right file?", maxEntries, h.Name)
		}
		name := EntryName(h.Name)
		isSnapshot := c.Single && h.Typeflag == tar.TypeReg && !strings.Contains(name, "/") && strings.HasSuffix(name, ".db")
		if !isSnapshot {
			info.Bytes += h.Size
			if info.Bytes > budget {
				return fmt.Errorf("entry %q takes the tarball past %d bytes when extracted: refused (a real static resources tarball is a few MB)", h.Name, budget)
			}
		}
		top, _, _ := strings.Cut(name, "/")
		if !contains(info.TopDirs, top) {
			info.TopDirs = append(info.TopDirs, top)
		}
		if !isSnapshot {
			return keep(h, r)
		}
		if info.Snapshot != "" {
			return fmt.Errorf("two snapshots (%s and %s) in one backup file", info.Snapshot, name)
		}
		info.Snapshot = name
		if hooks.snapshot != nil {
			return hooks.snapshot(h, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tarball %s: %w", p, err)
	}
	if c.Single && info.Snapshot == "" {
		return nil, fmt.Errorf("tarball %s holds no snapshot (*.db at its top level): it is not a 4.3.0/4.3.1 single-file backup", p)
	}
	sort.Strings(info.TopDirs)
	return info, nil
}

// walkTar calls fn for each entry of a .tar.gz, reading every byte so that
// gzip's checksum and a truncated stream are caught. Every read checks ctx,
// so a canceled walk stops within one buffer. read, if set, is told the
// bytes of each read of the compressed file.
func walkTar(ctx context.Context, p string, read func(int64), fn func(*tar.Header, io.Reader) error) error {
	f, err := openTarball(p)
	if err != nil {
		return err
	}
	defer f.Close()
	// The file is read a MiB at a time, which streams from a USB stick or a
	// network volume at its full rate and keeps the progress calls few;
	// gzip's own small reads check ctx, as a MiB of zeros inflates to
	// hundreds.
	gz, err := gzip.NewReader(ctxReader{ctx, bufio.NewReaderSize(countReader{f, read}, 1<<20)})
	if err != nil {
		return fmt.Errorf("not a gzip file: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped: %w", context.Cause(ctx))
		}
		if err != nil {
			return fmt.Errorf("damaged or truncated: %w", err)
		}
		if err := fn(h, tr); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("stopped: %w", context.Cause(ctx))
			}
			return fmt.Errorf("entry %q damaged or truncated: %w", h.Name, err)
		}
	}
	// What follows the archive's end is read only to check gzip's checksum:
	// tar's padding, a few KiB. More is not a tarball the tool wrote, and
	// could expand without end.
	n, err := io.Copy(io.Discard, io.LimitReader(gz, maxTrailer+1))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped: %w", context.Cause(ctx))
		}
		return fmt.Errorf("damaged or truncated: %w", err)
	}
	if n > maxTrailer {
		return fmt.Errorf("more than %d bytes follow the end of the tar archive: refused (not a backup tarball)", maxTrailer)
	}
	return gz.Close()
}

// maxTrailer bounds the bytes after a tar archive's end marker.
const maxTrailer = 1 << 20

// openTarball opens a tarball for walkTar (tests count its reads).
var openTarball = func(p string) (io.ReadCloser, error) { return os.Open(p) }

// countReader tells read (if set) the bytes of each read.
type countReader struct {
	r    io.Reader
	read func(int64)
}

func (c countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.read != nil && n > 0 {
		c.read(int64(n))
	}
	return n, err
}

// ctxReader fails its reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

func checkEntry(h *tar.Header) error {
	if strings.HasPrefix(h.Name, "/") {
		return fmt.Errorf("entry %q has an absolute path: refused", h.Name)
	}
	if hasDotDot(h.Name) {
		return fmt.Errorf("entry %q climbs out with \"..\": refused", h.Name)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		target := h.Linkname
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(EntryName(h.Name)), target)
		}
		if path.IsAbs(target) || hasDotDot(target) {
			return fmt.Errorf("symlink %q -> %q points outside the extracted folder: refused", h.Name, h.Linkname)
		}
	case tar.TypeLink:
		if path.IsAbs(h.Linkname) || hasDotDot(h.Linkname) {
			return fmt.Errorf("hard link %q -> %q points outside the extracted folder: refused", h.Name, h.Linkname)
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("entry %q is a device node or fifo: refused", h.Name)
	case tar.TypeXGlobalHeader:
	default:
		return fmt.Errorf("entry %q has unsupported type %q: refused", h.Name, h.Typeflag)
	}
	return nil
}

// EntryName is the path a tar entry named name extracts to, relative to
// the folder it is extracted into ("./a//b" is "a/b"; a leading "/" or
// ".." cannot climb out, CheckTarball refuses those).
func EntryName(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
