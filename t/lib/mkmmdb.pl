#!/usr/bin/perl
# Writes a small GeoIP2-Country database for the tests:
#   mkmmdb.pl OUT.mmdb CIDR=CC [CIDR=CC ...]
# Loopback ranges are reserved networks, which the writer drops unless told not to.
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift @ARGV or die "usage: mkmmdb.pl OUT.mmdb CIDR=CC...\n";
my %types = (country => 'map', iso_code => 'utf8_string');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 24,
    database_type            => 'GeoIP2-Country',
    languages                => ['en'],
    description              => { en => 'mc-proxy test countries' },
    remove_reserved_networks => 0,
    map_key_type_callback    => sub { $types{ $_[0] } },
);
for my $arg (@ARGV) {
    my ($net, $cc) = split /=/, $arg, 2;
    $tree->insert_network($net, { country => { iso_code => $cc } });
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
