# Kubeflow on Amazon EKS, written by kfctl with plain resources (no modules) so every piece is
# visible here.
#
# What this creates, in order:
#   1. a VPC with two public subnets in two availability zones (EKS needs two) and a route to
#      the internet,
#   2. IAM roles for the control plane and the nodes,
#   3. the EKS cluster,
#   4. a CPU node group sized for Kubeflow, optionally a GPU node group,
#   5. an S3 bucket for Kubeflow Pipelines artifacts.
# `kfctl delete --platform` runs `terraform destroy` here to remove all of it.

data "aws_availability_zones" "available" {
  state = "available"
}

# ---- network -------------------------------------------------------------------------------

resource "aws_vpc" "kubeflow" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = var.cluster_name
  }
}

resource "aws_internet_gateway" "kubeflow" {
  vpc_id = aws_vpc.kubeflow.id

  tags = {
    Name = var.cluster_name
  }
}

resource "aws_subnet" "public" {
  count = 2

  vpc_id                  = aws_vpc.kubeflow.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone       = data.aws_availability_zones.available.names[count.index]
  map_public_ip_on_launch = true

  # These tags let EKS place internet-facing load balancers (the Kubeflow gateway) here.
  tags = {
    Name                                        = "${var.cluster_name}-public-${count.index}"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
    "kubernetes.io/role/elb"                    = "1"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.kubeflow.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.kubeflow.id
  }
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# ---- IAM -----------------------------------------------------------------------------------

resource "aws_iam_role" "cluster" {
  name = "${var.cluster_name}-cluster"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "eks.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_iam_role" "node" {
  name = "${var.cluster_name}-node"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# What every EKS worker needs: join the cluster, run the VPC CNI, pull images from ECR.
resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = aws_iam_role.node.name
  policy_arn = each.value
}

# ---- cluster and nodes ---------------------------------------------------------------------

resource "aws_eks_cluster" "kubeflow" {
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids = aws_subnet.public[*].id
  }

  depends_on = [aws_iam_role_policy_attachment.cluster]
}

resource "aws_eks_node_group" "cpu" {
  cluster_name    = aws_eks_cluster.kubeflow.name
  node_group_name = "cpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.public[*].id
  instance_types  = [var.instance_type]
  disk_size       = 100

  scaling_config {
    desired_size = var.node_count
    min_size     = var.node_count
    max_size     = var.node_count
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "gpu" {
  # No GPU node group unless asked for: GPUs are expensive and need quota.
  count = var.gpu_node_count > 0 ? 1 : 0

  cluster_name    = aws_eks_cluster.kubeflow.name
  node_group_name = "gpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.public[*].id
  instance_types  = [var.gpu_instance_type]
  ami_type        = "AL2_x86_64_GPU"
  disk_size       = 100

  scaling_config {
    desired_size = var.gpu_node_count
    min_size     = var.gpu_node_count
    max_size     = var.gpu_node_count
  }

  # Only Pods that ask for a GPU land here.
  taint {
    key    = "nvidia.com/gpu"
    value  = "present"
    effect = "NO_SCHEDULE"
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# ---- storage for pipelines -----------------------------------------------------------------

data "aws_caller_identity" "current" {}

resource "aws_s3_bucket" "pipelines" {
  # Bucket names are global: the account ID keeps this one unique.
  bucket = "${var.cluster_name}-pipelines-${data.aws_caller_identity.current.account_id}"
}

resource "aws_s3_bucket_public_access_block" "pipelines" {
  bucket = aws_s3_bucket.pipelines.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
