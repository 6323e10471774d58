// Package roles are the recovery roles of the rescue image: restore, join
// and verify, each in its file, each registered with the boot from an init
// function, each one list of steps run by one runner that prints one
// numbered list and one marker. The boot subcommand imports the package
// for that side effect.
package roles
