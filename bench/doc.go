// Package bench measures distkit's patterns beside the libraries people use
// for the same job, in one run on one machine, so that the figures compare
// as ratios. It is a module of its own so that peer libraries never enter
// distkit's go.mod. See README.md for the figures and how to reproduce
// them.
package bench
