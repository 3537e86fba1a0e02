package shard

// Option configures a [Table].
type Option func(*options)

type options struct {
	alg Algorithm
}

// WithAlgorithm sets the placement algorithm. Default: [Default]().
func WithAlgorithm(a Algorithm) Option {
	return func(o *options) { o.alg = a }
}
