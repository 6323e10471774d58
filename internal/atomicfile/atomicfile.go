// Package atomicfile writes files so that a crash or a power loss leaves
// either the old file or the whole new one: write a temporary file in the
// same folder, fsync it, rename it over the target, fsync the folder.
package atomicfile

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File is a file being written under a temporary name; it takes its path
// only when Commit succeeds.
type File struct {
	*os.File
	path string
	mode fs.FileMode
}

// Create starts writing path (the folder is created if missing).
func Create(path string, mode fs.FileMode) (*File, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path, mode: mode}, nil
}

// Commit fsyncs the file, gives it its mode and path, and fsyncs the folder.
func (f *File) Commit() error {
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(f.mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), f.path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort drops the temporary file; after a Commit it does nothing.
func (f *File) Abort() {
	f.Close()
	os.Remove(f.Name())
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte, mode fs.FileMode) error {
	f, err := Create(path, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// CopyFile copies from to path atomically, with the given mode.
func CopyFile(from, path string, mode fs.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := Create(path, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// SyncDir fsyncs a folder so that renames inside it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
